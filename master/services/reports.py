"""Agents' instance reports applied to the database: the agents' word is the truth about their
processes. Batched per turn of the event loop, through SQLAlchemy Core (the hot path)."""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from master.db import models
from master.db.session import Database, retry_conflicts
from master.services import instance_rows, ownership
from master.services.instance_feed import InstanceFeed
from protocol.messages import InstanceReport

log = logging.getLogger(__name__)

MAX_REPORTS = 500  # reports per transaction at the end of a turn; a larger burst takes more turns


Batch = tuple[str, list[InstanceReport], int | None]  # node id, reports, the link's epoch
Queued = Batch | Callable[[], None]


class ReportQueue:
    def __init__(self, db: Database, feed: InstanceFeed) -> None:
        self.db = db
        self.feed = feed
        self._queued: deque[Queued] = deque()
        self._scheduled = False

    def queue(self, node_id: str, reports: list[InstanceReport], epoch: int | None = None) -> None:
        """Reports as they arrive: applied at the end of this turn of the event loop, together
        with those of every other agent whose messages arrived in the same turn (one transaction
        per burst, not per message). A burst larger than `MAX_REPORTS` goes on in the next
        turns, oldest first. With several masters, reports that came over a link whose `epoch`
        is no longer the node's (another master holds it now) are dropped."""
        self._queued.append((node_id, reports, epoch))
        self._schedule()

    def after(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every report queued before it is applied: a command's answer
        (a waiter woken) never overtakes the reports its agent sent before it."""
        if not self._queued:
            callback()
            return
        self._queued.append(callback)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_some)

    def _flush_some(self) -> None:
        self._scheduled = False
        self.flush(MAX_REPORTS)
        if self._queued:
            self._schedule()

    def flush(self, limit: int | None = None) -> None:
        """Apply what `queue` holds, everything unless `limit` reports (also called before
        anything reads it back); the callbacks taken with them run after their commit."""
        queued: list[Batch] = []
        callbacks: list[Callable[[], None]] = []
        count = 0
        while self._queued and (limit is None or count < limit):
            item = self._queued.popleft()
            if callable(item):
                callbacks.append(item)
                continue
            queued.append(item)
            count += len(item[1])
        if queued:
            try:
                self.apply(queued)
            except Exception:  # a callback of the loop: nobody else would see it
                log.exception("could not apply %d report messages", len(queued))
        for callback in callbacks:
            callback()

    def apply(self, batches: list[Batch]) -> None:
        """Reports of one or more nodes, in order, in one transaction. Identity comes from the
        socket: a node only changes its own instances."""
        flat = [(node_id, report) for node_id, reports, _ in batches for report in reports]
        held: dict[str, int | None] = {n: e for n, _, e in batches if e is not None}
        fenced = held if self.db.is_postgres else {}  # one master on SQLite: nobody else's
        rows, changes = retry_conflicts(lambda: self._write(flat, fenced))
        for instance_id in changes:
            self.feed.publish_view(instance_rows.view(rows[instance_id]))

    def _write(
        self, flat: list[tuple[str, InstanceReport]], held: dict[str, int | None]
    ) -> tuple[dict[str, instance_rows.Row], dict[str, instance_rows.Row]]:
        """One transaction: the rows read (locked) and the changes written to them; reports
        of the nodes in `held` another master has taken since (their epoch moved) are left."""
        with self.db.engine.begin() as conn:
            rows = instance_rows.load_reported(conn, {report.instance_id for _, report in flat})
            lost = set(ownership.lost(conn, held)) if held else set()  # read after the locks
            changes: dict[str, dict[str, Any]] = {}  # a later report of an instance wins
            for node_id, report in flat:
                if node_id in lost:
                    continue
                row = rows.get(report.instance_id)
                if row is None or row["node_id"] != node_id:
                    log.info("node %s reported unknown instance %s", node_id, report.instance_id)
                    continue
                change = instance_rows.report_changes(row, report)
                if all(row[key] == value for key, value in change.items()):
                    continue  # nothing new (said twice, or what the master wrote itself)
                changes.setdefault(row["id"], {}).update(change)
                row.update(change)
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
