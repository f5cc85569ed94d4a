"""Alert transitions written in one transaction per loop turn, then published (topic `alert`)
and handed to the webhook notifier; nothing here waits for the network.

The database decides between masters: an alert opens only if no alert of its rule and target is
open (a partial unique index), and resolves only if it is still open (compare-and-set). A
transition another master made first is neither published nor notified; the engine takes the
open alert it lost to as its own (`on_lost`). Webhooks are rows of the outbox table written in
the same transaction (master/services/alerting/delivery.py).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Insert, Table, bindparam, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.alerting.active import AlertRecord
from master.services.alerting.delivery import Pending, WebhookOutbox
from master.services.alerting.rules import Rule
from master.services.alerting.serializers import alert_out, webhook_body
from master.services.alerting.webhooks import Notifier
from protocol.rest import iso

log = logging.getLogger(__name__)

Alert = models.Alert
FIRING = text("state = 'firing'")  # the partial unique index's condition, as literal SQL
TABLE = cast(Table, Alert.__table__)
_RESOLVE = (
    update(TABLE)
    .where(TABLE.c.id == bindparam("b_id"), TABLE.c.state == "firing")
    .values({c: bindparam(c) for c in ("state", "resolved_value", "resolved_at", "duration")})
)
_RESOLVE_ACKED = _RESOLVE.returning(TABLE.c.acked_at, TABLE.c.acked_by)
Transition = tuple[str, AlertRecord, dict[str, Any], Rule | None]


class AlertOutbox:
    def __init__(
        self, db: Database, hub: Hub, notifier: Notifier, webhooks: WebhookOutbox, master_url: str
    ) -> None:
        self.db = db
        self.hub = hub
        self.notifier = notifier
        self.webhooks = webhooks
        self.master_url = master_url
        # Told of an alert this master opened too late (another's is open): (ours, theirs).
        self.on_lost: Callable[[AlertRecord, AlertRecord | None], None] | None = None
        self._batch: list[Transition] = []
        self._flush_soon = False

    @property
    def pending(self) -> bool:
        return bool(self._batch)

    def pending_ids(self) -> set[str]:
        return {rec.id for _, rec, _, _ in self._batch}

    def clear(self) -> None:
        self._batch.clear()

    def emit(self, event: str, rec: AlertRecord, rule: Rule | None) -> None:
        self._batch.append((event, rec, alert_out(rec).model_dump(), rule))
        if not self._flush_soon:
            self._flush_soon = True
            with contextlib.suppress(RuntimeError):  # no loop (unit tests): the tick flushes
                asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the transitions of this loop turn in one transaction, then tell everyone."""
        self._flush_soon = False
        batch, self._batch = self._batch, []
        if not batch:
            return
        lost: dict[str, AlertRecord | None] = {}
        sends: list[Pending] = []
        stored = True
        try:
            with self.db.session() as s:
                lost = self._write(s, batch, sends)
                s.commit()
        except SQLAlchemyError:
            log.exception("could not store %d alert transition(s)", len(batch))
            stored, sends = False, []
        for event, rec, data, rule in batch:
            if rec.id in lost:
                continue
            self.hub.publish("alert", data)
            if not stored and rec.notified and rule is not None and rule.webhook_url:
                payload = webhook_body(event, rec, rule, self.master_url)
                payload["alert"] = data
                self.notifier.enqueue(rule.webhook_url, payload, event)
        self.webhooks.hand_off(sends)
        if self.on_lost is not None:
            for rec_id, theirs in lost.items():
                ours = next(r for _, r, _, _ in batch if r.id == rec_id)
                self.on_lost(ours, theirs)

    def _write(
        self, s: Session, batch: list[Transition], sends: list[Pending]
    ) -> dict[str, AlertRecord | None]:
        """Store the batch; returns the alerts whose transition another master made first
        (with the open alert that won, for those that lost an opening)."""
        new = {rec.id: rec for event, rec, _, _ in batch if event == "firing"}
        lost: dict[str, AlertRecord | None] = {}
        if new:
            s.execute(self._insert(), [rec.columns() for rec in new.values()])
            won = set(s.scalars(select(Alert.id).where(Alert.id.in_(list(new)))))
            for rec in new.values():
                if rec.id not in won:
                    lost[rec.id] = self._open_one(s, rec)
        resolving = [(rec, data) for event, rec, data, _ in batch if rec.id not in new]
        if resolving:
            lost.update(dict.fromkeys(self._resolve(s.connection(), resolving)))
        now: float | None = None
        for event, rec, data, rule in batch:
            if rec.id in lost or not rec.notified or rule is None or not rule.webhook_url:
                continue
            if now is None:
                now = self.webhooks.now(s)
            payload = webhook_body(event, rec, rule, self.master_url)
            payload["alert"] = data
            sends.append(self.webhooks.add(s, rec.id, event, rule.webhook_url, payload, now))
        return lost

    def _resolve(
        self, conn: Connection, resolving: list[tuple[AlertRecord, dict[str, Any]]]
    ) -> list[str]:
        """UPDATE the open rows; returns the ids another master resolved first. On PostgreSQL
        the events get the ack as the row has it (made on any master)."""
        params = [{"b_id": rec.id, **rec.resolution()} for rec, _ in resolving]
        if not self.db.is_postgres:  # one master: its memory has the ack; one executemany
            if conn.execute(_RESOLVE, params).rowcount == len(params):
                return []
            mine = {p["b_id"]: p["resolved_at"] for p in params}
            rows = conn.execute(
                select(TABLE.c.id, TABLE.c.resolved_at).where(TABLE.c.id.in_(list(mine)))
            )
            return [alert_id for alert_id, at in rows if at != mine[alert_id]]
        lost = []
        for p, (_, data) in zip(params, resolving, strict=True):
            acked = conn.execute(_RESOLVE_ACKED, p).first()
            if acked is None:
                lost.append(p["b_id"])
                continue
            data["acked"], data["acked_at"] = acked[0] is not None, iso(acked[0])
            data["acked_by"] = acked[1]
        return lost

    def _insert(self) -> Insert:
        """INSERT ... ON CONFLICT (the open alert of the rule and target) DO NOTHING (no
        RETURNING: SQLite has it only since 3.35)."""
        if self.db.is_postgres:  # imported only where used: a master on SQLite starts sooner
            from sqlalchemy.dialects import postgresql

            made: Insert = postgresql.insert(Alert).on_conflict_do_nothing(
                index_elements=[Alert.rule_id, Alert.target_id], index_where=FIRING
            )
            return made
        stmt: Insert = sqlite.insert(Alert).on_conflict_do_nothing(
            index_elements=[Alert.rule_id, Alert.target_id], index_where=FIRING
        )
        return stmt

    @staticmethod
    def _open_one(s: Session, rec: AlertRecord) -> AlertRecord | None:
        row = s.scalars(
            select(Alert).where(
                Alert.rule_id == rec.rule_id,
                Alert.target_id == rec.target_id,
                Alert.state == "firing",
            )
        ).first()
        return None if row is None else AlertRecord.from_row(row)
