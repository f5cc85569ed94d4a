"""Agents' instance reports applied to the database: the agents' word is the truth about their
processes. Batched per turn of the event loop, through SQLAlchemy Core (the hot path)."""

import asyncio
import logging
from typing import Any

from master.db import models
from master.db.session import Database, retry_conflicts
from master.services import instance_rows
from master.services.instance_feed import InstanceFeed
from protocol.messages import InstanceReport

log = logging.getLogger(__name__)


class ReportQueue:
    def __init__(self, db: Database, feed: InstanceFeed) -> None:
        self.db = db
        self.feed = feed
        self._queued: list[tuple[str, list[InstanceReport]]] = []

    def queue(self, node_id: str, reports: list[InstanceReport]) -> None:
        """Reports as they arrive: applied at the end of this turn of the event loop, together
        with those of every other agent whose messages arrived in the same turn (one transaction
        per burst, not per message). Order is kept: the flush is scheduled before any waiter a
        later message of the turn wakes."""
        self._queued.append((node_id, reports))
        if len(self._queued) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Apply what `queue` holds (also called before anything reads it back)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        try:
            self.apply(queued)
        except Exception:  # a callback of the loop: nobody else would see it
            log.exception("could not apply %d report messages", len(queued))

    def apply(self, batches: list[tuple[str, list[InstanceReport]]]) -> None:
        """Reports of one or more nodes, in order, in one transaction. Identity comes from the
        socket: a node only changes its own instances."""
        flat = [(node_id, report) for node_id, reports in batches for report in reports]
        rows, changes = retry_conflicts(lambda: self._write(flat))
        for instance_id in changes:
            self.feed.publish_view(instance_rows.view(rows[instance_id]))

    def _write(
        self, flat: list[tuple[str, InstanceReport]]
    ) -> tuple[dict[str, instance_rows.Row], dict[str, instance_rows.Row]]:
        """One transaction: the rows read (locked) and the changes written to them."""
        with self.db.engine.begin() as conn:
            rows = instance_rows.load(conn, {report.instance_id for _, report in flat})
            changes: dict[str, dict[str, Any]] = {}  # a later report of an instance wins
            for node_id, report in flat:
                row = rows.get(report.instance_id)
                if row is None or row["node_id"] != node_id:
                    log.info("node %s reported unknown instance %s", node_id, report.instance_id)
                    continue
                changes[row["id"]] = instance_rows.report_changes(row, report)
                row.update(changes[row["id"]])
            if changes:
                instance_rows.write(conn, changes)
        return rows, changes


def apply_to_instance(inst: models.Instance, report: InstanceReport) -> None:
    """`instance_rows.report_changes` on an ORM instance (the adoption path)."""
    current = {
        "state": inst.state,
        "last_error": inst.last_error,
        "user": inst.user,
        "version": inst.version,
    }
    for key, value in instance_rows.report_changes(current, report).items():
        setattr(inst, key, value)
