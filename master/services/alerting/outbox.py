"""Alert transitions written in one transaction per loop turn, then published (topic `alert`)
and handed to the webhook notifier; nothing here waits for the network."""

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.alerting.active import AlertRecord
from master.services.alerting.rules import Rule
from master.services.alerting.serializers import alert_out, webhook_body
from master.services.alerting.webhooks import Notifier

log = logging.getLogger(__name__)


class AlertOutbox:
    def __init__(self, db: Database, hub: Hub, notifier: Notifier, master_url: str) -> None:
        self.db = db
        self.hub = hub
        self.notifier = notifier
        self.master_url = master_url
        self._batch: list[tuple[str, AlertRecord, dict[str, Any], Rule | None]] = []
        self._flush_soon = False

    @property
    def pending(self) -> bool:
        return bool(self._batch)

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
        try:
            with self.db.session() as s:
                new = {rec.id: rec for event, rec, _, _ in batch if event == "firing"}
                s.add_all(rec.to_row() for rec in new.values())
                s.flush()
                for event, rec, _, _ in batch:
                    if event != "firing" and rec.id not in new:
                        s.execute(
                            update(models.Alert)
                            .where(models.Alert.id == rec.id)
                            .values(**rec.updates())
                        )
                s.commit()
        except SQLAlchemyError:
            log.exception("could not store %d alert transition(s)", len(batch))
        for event, rec, data, rule in batch:
            self.hub.publish("alert", data)
            if rec.notified and rule is not None and rule.webhook_url:
                payload = webhook_body(event, rec, rule, self.master_url)
                payload["alert"] = data
                self.notifier.enqueue(rule.webhook_url, payload, event)
