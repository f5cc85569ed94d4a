"""The webhook outbox table and who sends its rows.

A row is written in the transaction that opens or resolves the alert it tells of
(master/services/alerting/outbox.py), claimed by the master that wrote it until
`claimed_until` (by the database's clock; renewed every second while its notifier holds it,
with several masters), handed to that master's notifier at once, and deleted when the notifier
is done with it (sent, or given up). Rows whose claim ran out, whose master is
offline, or that a restarted master left behind, are claimed again and sent once more: the one
duplicate a failover may cause. A row keeps its id as the delivery id (`X-GDOS-Delivery`), so a
receiver can tell a resend.
"""

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from master.db import models
from master.db.models import new_id
from master.db.session import Database
from master.services.agents import AgentRegistry
from master.services.alerting.webhooks import Notifier, encode
from master.services.masters import OFFLINE_AFTER

log = logging.getLogger(__name__)

CLAIM_SECONDS = 30.0  # a claim lasts this long unless its master renews it (`renew`)
CLAIM_LIMIT = 200  # rows claimed per scan
Row = models.AlertOutboxRow
_NOW = text("SELECT extract(epoch from clock_timestamp())")


@dataclass(frozen=True, slots=True)
class Pending:
    id: str
    url: str
    body: str
    event: str


class WebhookOutbox:
    def __init__(self, db: Database, notifier: Notifier, agents: AgentRegistry) -> None:
        self.db = db
        self.notifier = notifier
        self.agents = agents
        self.inflight: set[str] = set()  # row ids this master's notifier holds

    @property
    def me(self) -> str:
        return self.agents.master_id or "local"

    def now(self, s: Session) -> float:
        """By the database's clock on PostgreSQL (claims compare across masters)."""
        if not self.db.is_postgres:
            return time.time()
        return float(s.execute(_NOW).scalar() or 0.0)

    def add(
        self, s: Session, alert_id: str, event: str, url: str, payload: dict[str, Any], now: float
    ) -> Pending:
        """A row in the caller's transaction, claimed by this master."""
        row = Row(
            id=new_id(),
            alert_id=alert_id,
            event=event,
            url=url,
            body=encode(payload).decode(),
            created_at=now,
            claimed_by=self.me,
            claimed_until=now + CLAIM_SECONDS,
        )
        s.add(row)
        return Pending(row.id, url, row.body, event)

    def hand_off(self, rows: list[Pending]) -> None:
        """To this master's notifier (the rows are claimed by it)."""
        for p in rows:
            if p.id in self.inflight:
                continue
            self.inflight.add(p.id)
            done = functools.partial(self._done, p.id)
            self.notifier.send(p.url, p.body.encode(), p.event, p.id, done)

    def _done(self, row_id: str, sent: bool) -> None:
        self.inflight.discard(row_id)
        try:
            with self.db.session() as s:
                s.execute(delete(Row).where(Row.id == row_id))
                s.commit()
        except SQLAlchemyError:  # sent again later: the one duplicate allowed
            log.warning("could not mark webhook %s done", row_id, exc_info=True)

    def renew(self, s: Session, now: float) -> None:
        """Several masters: this master is still sending the rows its notifier holds."""
        if self.inflight:
            s.execute(
                update(Row)
                .where(Row.id.in_(list(self.inflight)), Row.claimed_by == self.me)
                .values(claimed_until=now + CLAIM_SECONDS)
            )

    def claim(self, at_start: bool = False) -> list[Pending]:
        """Claim the rows nobody is sending: claims run out, their master offline, and at this
        master's start its own earlier process's rows."""
        with self.db.session() as s:
            now = self.now(s)
            stale: list[ColumnElement[bool]] = [Row.claimed_until < now, Row.claimed_by.is_(None)]
            if self.db.is_postgres:
                online = select(models.Master.id).where(
                    models.Master.status == "online",
                    models.Master.last_seen >= now - OFFLINE_AFTER,
                )
                stale.append(Row.claimed_by.not_in(online))
            if at_start:
                stale.append(Row.claimed_by == self.me)
            q = select(Row.id, Row.url, Row.body, Row.event).where(or_(*stale))
            q = q.order_by(Row.created_at).limit(CLAIM_LIMIT)
            if self.db.is_postgres:
                q = q.with_for_update(skip_locked=True)
            rows = [Pending(*r) for r in s.execute(q) if r[0] not in self.inflight]
            if rows:
                s.execute(
                    update(Row)
                    .where(Row.id.in_([p.id for p in rows]))
                    .values(claimed_by=self.me, claimed_until=now + CLAIM_SECONDS)
                )
            s.commit()
        if rows:
            log.info("sending %d webhook(s) nobody else is sending", len(rows))
        return rows

    def resend(self, at_start: bool = False) -> None:
        try:
            rows = self.claim(at_start)
        except SQLAlchemyError:  # the database away: the next scan tries again
            log.warning("could not read the webhook outbox", exc_info=True)
            return
        self.hand_off(rows)
