"""What the leader alone does for the cluster of masters (PostgreSQL): the nodes a dead master
held are marked offline and their instances `unknown`, and the operations it drove are taken
over. On SQLite the single master does neither: it marks its own nodes as they go, and resumes
its operations at its start.

A master is dead when it has gone unheard of for OFFLINE_AFTER or when the server has ended its
lease session (master/services/masters.py `gone_ids`). Every write here is fenced: a node by
the epoch read (one that said hello elsewhere meanwhile is untouched, and the epoch goes up so
that the dead master, should it wake, finds its link stale); an operation by compare-and-set on
its driver (and the old driver's saves are refused from then on).
"""

import asyncio
import contextlib
import logging
import time

from sqlalchemy import Connection

from master.db.session import Database
from master.services import ownership
from master.services.leader import LeaderLease
from master.services.masters import Masters
from master.services.nodes import Nodes
from master.services.operations import Operations
from master.services.releases import RELEASE_KINDS
from master.services.rollouts import Rollouts

log = logging.getLogger(__name__)

EVERY = 1.0  # seconds between the leader's looks at the masters table
# Seconds a dead master's nodes get to say hello to another master before the leader marks them
# offline: its agents are back within a few seconds (at once after a kill -9), and marking them
# meanwhile would fight their hellos for the same rows and send every console an offline event
# and an `unknown` for each instance, which the hello then undoes.
LOSS_GRACE = 5.0


class LeaderJobs:
    def __init__(
        self,
        db: Database,
        lease: LeaderLease,
        masters: Masters,
        nodes: Nodes,
        operations: Operations,
        rollouts: Rollouts,
        grace: float = LOSS_GRACE,
    ) -> None:
        self.db = db
        self.grace = grace
        self._gone_since: dict[str, float] = {}  # dead master -> when this leader saw it dead
        self.lease = lease
        self.masters = masters
        self.nodes = nodes
        self.operations = operations
        self.rollouts = rollouts
        self._wake = asyncio.Event()
        lease.on_change(self._on_lease)

    def _on_lease(self, leading: bool) -> None:
        if leading:
            self._wake.set()  # a new leader looks at once

    async def run(self) -> None:
        if not self.db.is_postgres:
            return
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), EVERY)
            self._wake.clear()
            if not self.lease.held():
                continue
            try:
                self.once()
            except Exception:  # the database away: the next look tries again
                log.warning("the leader's look at dead masters failed", exc_info=True)

    def once(self) -> None:
        """One look: every node and operation of a dead master dealt with."""
        now = time.monotonic()
        with self.db.engine.connect() as conn:
            gone = self.masters.gone_ids(conn)
            since = {m: self._gone_since.get(m, now) for m in gone}
            self._gone_since = since
            held = ownership.held_by(conn, [m for m in gone if now - since[m] >= self.grace])
        for node_id, epoch, dead in held:
            if not self.lease.held():
                return
            self.lose_node(node_id, epoch, dead)
        store = self.operations.store
        for operation_id, driver in store.orphans(gone):
            if not self.lease.held():
                return
            op = store.take_over(operation_id, driver)
            if op is None:
                continue  # ended, or another leader was quicker
            runner = self.rollouts if op.kind in RELEASE_KINDS else self.operations
            runner.take_over(op, driver)

    def lose_node(self, node_id: str, epoch: int, dead: str) -> None:
        """The node's master died: offline, its instances `unknown` (unless it moved)."""

        def fence(conn: Connection) -> bool:
            return ownership.orphan(conn, node_id, epoch, dead)

        if self.nodes.orchestrator.mark_node_unknown(node_id, fence):
            log.warning("node %s: its master %s died; marked offline", node_id, dead)
            self.nodes.publish(node_id)
