"""Agents' hellos applied in batches: every hello that arrives in one turn of the event loop is
reconciled in one transaction (after a master restart the whole fleet says hello at once).

What a node's hello changes is master/services/reconcile.py's decision; this module reads the
rows, writes the changes, publishes them and hands each caller its node's decision. Order:
the reports queued before a batch are applied first (`ReportQueue.flush`), hellos of a batch
in the order they arrived, and nothing is published before its transaction commits.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, update

from master import heap
from master.db import models
from master.db.session import Database, take_over
from master.services import accounts, instance_rows, ownership
from master.services.agents import AgentLink, AgentRegistry
from master.services.instance_feed import InstanceFeed
from master.services.reconcile import Reconciliation, reconcile
from master.services.reports import ReportQueue
from master.start_marks import mark, mark_latest
from protocol.messages import Hello

log = logging.getLogger(__name__)

NODES = cast(Table, models.Node.__table__)
# Instance rows per transaction, one transaction per turn of the event loop: a larger burst
# goes on in the next turns, and what arrived meanwhile (API calls, metrics) is served between.
# On SQLite a slice is short enough to keep the loop's lag low; on PostgreSQL each transaction
# also waits for round trips, so fewer, larger ones.
MAX_ROWS = 250  # a row costs as much in a smaller slice: the loop is held for less each turn
MAX_ROWS_POSTGRES = 2000
MAX_NODES = 500
TAKEN_TABLES = ("nodes", "instances")  # the rows a hello locks
# Each accepted hello claims the node: its epoch goes up by one and names this master.
_UPDATE_NODE = update(NODES).where(NODES.c.id == bindparam("b_id")).values(**ownership.CLAIM)


@dataclass
class _Hello:
    node_id: str
    hello: Hello
    decided: "asyncio.Future[Reconciliation]"
    link: AgentLink | None = None


class HelloQueue:
    def __init__(
        self,
        db: Database,
        feed: InstanceFeed,
        reports: ReportQueue,
        interrupted_restarts: set[str] | None = None,
        agents: AgentRegistry | None = None,
    ) -> None:
        self.db = db
        self.feed = feed
        self.reports = reports
        # Restarts cut off mid-stop (Commands): decided at the node's hello, then forgotten.
        self.interrupted_restarts = (
            interrupted_restarts if interrupted_restarts is not None else set()
        )
        self.agents = agents  # names this master on the nodes it claims
        # Told every instance row of the greeting nodes once committed (several masters: the
        # directory learns instances another master made while the node was there).
        self.on_rows: Callable[[Iterable[Mapping[str, Any]]], None] | None = None
        self._queued: deque[_Hello] = deque()
        self._scheduled = False

    def submit(
        self, node_id: str, hello: Hello, link: AgentLink | None = None
    ) -> "asyncio.Future[Reconciliation]":
        """Reconcile the node from its hello at the end of this turn of the event loop; `link`
        gets the node's new ownership epoch."""
        loop = asyncio.get_running_loop()
        item = _Hello(node_id, hello, loop.create_future(), link)
        mark("first_hello")
        heap.greeting()
        self._queued.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return item.decided

    def flush(self) -> None:
        """Apply the queued hellos, up to a transaction's worth; the rest in the next turn."""
        self._scheduled = False
        batch: list[_Hello] = []
        rows = 0
        limit = MAX_ROWS_POSTGRES if self.db.is_postgres else MAX_ROWS
        while self._queued and len(batch) < MAX_NODES:
            size = len(self._queued[0].hello.instances)
            if batch and rows + size > limit:
                break
            batch.append(self._queued.popleft())
            rows += size
        if self._queued:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        if not batch:
            return
        began = time.perf_counter()
        self.reports.flush()  # what the nodes' previous connections said comes first
        try:
            hellos = [(item.node_id, item.hello) for item in batch]
            epochs: dict[str, int] = {}
            # A stopped master's transaction holding these nodes' rows is ended, not waited for.
            decided = take_over(self.db, lambda: self.apply(hellos, epochs), TAKEN_TABLES)
        except Exception as exc:  # a callback of the loop: hand it to each waiting greeting
            log.exception("could not apply %d hellos", len(batch))
            for item in batch:
                if not item.decided.done():
                    item.decided.set_exception(exc)
            return
        mark_latest("hellos_applied", len(batch))
        log.debug(  # a take-over's stage marks (bench.cluster --stages)
            "applied %d hellos (%d rows) in %.1f ms, %d queued",
            len(batch),
            rows,
            (time.perf_counter() - began) * 1000,
            len(self._queued),
        )
        for item, decision in zip(batch, decided, strict=True):
            if item.link is not None:
                item.link.epoch = epochs.get(item.node_id)
                item.link.greeting = False  # what is decided from now on, this hello did not read
            for view in decision.views.values():
                self.feed.publish_view(view)
            if not item.decided.done():  # a greeting cancelled meanwhile (shutdown) is gone
                item.decided.set_result(decision)

    def apply(
        self, hellos: list[tuple[str, Hello]], epochs: dict[str, int] | None = None
    ) -> list[Reconciliation]:
        """Hellos of one or more nodes, in order, in one transaction; `epochs` gets each
        node's ownership epoch as this transaction left it."""
        now = time.time()
        me = self.agents.master_id if self.agents is not None else None
        decided: list[Reconciliation] = []
        with self.db.engine.begin() as conn:
            self.db.bound_lock_wait(conn)
            conn.execute(
                _UPDATE_NODE,
                [
                    {
                        "b_id": node_id,
                        **accounts.host_columns(hello.host),
                        "agent_version": hello.agent_version,
                        "last_seen": now,
                        "master_id": me,
                    }
                    for node_id, hello in hellos
                ],
            )
            if epochs is not None:
                epochs.update(ownership.epochs(conn, {node_id for node_id, _ in hellos}))
            by_node: dict[str, dict[str, dict[str, Any]]] = {}
            loaded = instance_rows.load_nodes(conn, {node_id for node_id, _ in hellos})
            for iid, row in loaded.items():
                by_node.setdefault(row["node_id"], {})[iid] = row
            changes: dict[str, dict[str, Any]] = {}
            for node_id, hello in hellos:
                rows = by_node.get(node_id, {})
                decision = reconcile(rows, hello.instances, self.interrupted_restarts)
                for iid, change in decision.changes.items():
                    rows[iid].update(change)  # a second hello of the node in this batch sees it
                    changes.setdefault(iid, {}).update(change)
                decided.append(decision)
            instance_rows.write(conn, changes)
        self.interrupted_restarts.difference_update(loaded)
        if self.on_rows is not None:
            self.on_rows(loaded.values())
        return decided

    def close(self) -> None:
        """The master stops (or restores a backup): greetings still waiting fail."""
        while self._queued:
            item = self._queued.popleft()
            if not item.decided.done():
                item.decided.cancel()
