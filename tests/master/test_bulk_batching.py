"""Bulk work in batches on real SQLite: report bursts larger than a transaction, hellos of one
loop turn in one transaction. Nothing is lost, order is kept, and nothing is published (or
answered) before the rows it shows are committed."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event

from master.db import models
from master.services import hellos as hellos_module
from master.services import reports as reports_module
from master.services.wiring import Services
from protocol.messages import Hello, HostInfo, InstanceReport
from protocol.states import InstanceState
from tests.master.inprocess import make_app, running, services_of


@dataclass
class Master:
    svc: Services
    call: Any  # runs a coroutine function on the master's loop


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    app = make_app(tmp_path_factory.mktemp("bulk") / "m")
    with running(app) as (client, _):
        assert client.portal is not None
        yield Master(services_of(app), client.portal.call)


def fleet(svc: Services, nodes: int, per_node: int, state: str = "starting") -> list[list[str]]:
    """`nodes` nodes with `per_node` instances each; their instance ids, per node."""
    with svc.db.session() as s:
        system = models.System(name=f"s{uuid.uuid4().hex[:8]}")
        made = [models.Node(secret_hash=uuid.uuid4().hex) for _ in range(nodes)]
        s.add(system)
        s.add_all(made)
        s.flush()
        rows = [
            [
                models.Instance(
                    system_id=system.id,
                    node_id=n.id,
                    name=f"i{n.id}-{k}",
                    state=state,
                    desired_state="running",
                )
                for k in range(per_node)
            ]
            for n in made
        ]
        s.add_all([r for per in rows for r in per])
        s.commit()
        return [[r.id for r in per] for per in rows]


def node_of(svc: Services, instance_id: str) -> str:
    with svc.db.session() as s:
        inst = s.get(models.Instance, instance_id)
        assert inst is not None
        return inst.node_id


class Committed:
    """Reads instance states through a connection of its own: it sees committed rows only."""

    def __init__(self, svc: Services) -> None:
        path = svc.db.engine.url.database
        assert path
        self.conn = sqlite3.connect(path, check_same_thread=False)

    def state(self, instance_id: str) -> str:
        row = self.conn.execute("select state from instances where id = ?", (instance_id,))
        return str(row.fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class InstanceUpdates:
    """Counts the transactions that update instance rows (other tasks may commit meanwhile)."""

    def __init__(self, svc: Services) -> None:
        self.engine = svc.db.engine
        self.began = 0
        self.seen: set[int] = set()
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._statement)

    @property
    def count(self) -> int:
        return len(self.seen)

    def _begin(self, conn: Any) -> None:
        self.began += 1

    def _statement(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE INSTANCES"):
            self.seen.add(self.began)

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._statement)


def test_a_report_burst_larger_than_a_transaction_loses_nothing_and_keeps_order(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = master.svc
    monkeypatch.setattr(reports_module, "MAX_REPORTS", 4)
    ids = [i for per in fleet(svc, 3, 4) for i in per]
    committed = Committed(svc)
    published: list[tuple[str, str, str]] = []  # (id, published state, committed state)

    def on_view(view: Any) -> None:
        if view.id in ids:
            published.append((view.id, view.state, committed.state(view.id)))

    svc.orchestrator.feed.listeners.append(on_view)
    updates = InstanceUpdates(svc)
    answered: list[list[str]] = []  # committed states when the queued answer ran
    queue = svc.orchestrator.reports
    node_of_id = {iid: node_of(svc, iid) for iid in ids}

    async def burst() -> None:
        for iid in ids:  # twelve reports, one message each
            queue.queue(node_of_id[iid], [InstanceReport(iid, InstanceState.RUNNING, pid=1)])
        queue.queue(node_of_id[ids[0]], [InstanceReport(ids[0], InstanceState.STOPPED)])
        # An agent's answer after its reports: its waiter must see every one of them applied.
        queue.after(lambda: answered.append([committed.state(i) for i in ids]))
        for _ in range(20):
            await asyncio.sleep(0)

    try:
        master.call(burst)
    finally:
        updates.close()
        svc.orchestrator.feed.listeners.remove(on_view)
    assert updates.count >= 3, "a burst of 13 reports in transactions of 4 takes several turns"
    assert answered == [["stopped"] + ["running"] * 11]
    assert all(shown == stored for _, shown, stored in published), published
    assert {iid for iid, _, _ in published} == set(ids)
    assert [committed.state(i) for i in ids] == ["stopped"] + ["running"] * 11
    committed.close()


def test_an_answer_with_nothing_queued_is_not_delayed(master: Master) -> None:
    ran: list[int] = []

    async def answer() -> list[int]:
        master.svc.orchestrator.reports.after(lambda: ran.append(1))
        return list(ran)

    assert master.call(answer) == [1]


def hello_of(ids: list[str], state: InstanceState, pid: int) -> Hello:
    return Hello(
        agent_version="t",
        host=HostInfo(hostname="h"),
        instances=[InstanceReport(i, state, pid=pid) for i in ids],
    )


def test_hellos_of_one_turn_go_in_one_transaction_after_the_reports_queued_before(
    master: Master,
) -> None:
    svc = master.svc
    per_node = fleet(svc, 3, 2, state="unknown")
    nodes = [node_of(svc, ids[0]) for ids in per_node]
    committed = Committed(svc)
    published: list[tuple[str, str, str]] = []
    every = {i for ids in per_node for i in ids}

    def on_view(view: Any) -> None:
        if view.id in every:
            published.append((view.id, view.state, committed.state(view.id)))

    svc.orchestrator.feed.listeners.append(on_view)
    updates = InstanceUpdates(svc)
    orch = svc.orchestrator

    async def storm() -> list[Any]:
        # What node 0's old connection said comes first; its hello, later, is the newer word.
        orch.reports.queue(nodes[0], [InstanceReport(per_node[0][0], InstanceState.FAILED)])
        waiting = [
            orch.hellos.submit(node, hello_of(ids, InstanceState.RUNNING, pid=7))
            for node, ids in zip(nodes, per_node, strict=True)
        ]
        return list(await asyncio.gather(*waiting))

    try:
        decided = master.call(storm)
    finally:
        updates.close()
        svc.orchestrator.feed.listeners.remove(on_view)
    assert len(decided) == 3 and all(d.unmanaged == [] for d in decided)
    assert updates.count == 2, "the queued report, then all three hellos in one transaction"
    assert [committed.state(i) for i in sorted(every)] == ["running"] * 6
    assert all(shown == stored for _, shown, stored in published), published
    assert {iid for iid, state, _ in published if state == "running"} == every
    committed.close()


@pytest.mark.parametrize(("limit", "value"), [("MAX_NODES", 2), ("MAX_ROWS", 6)])
def test_a_hello_storm_larger_than_a_transaction_loses_none(
    master: Master, monkeypatch: pytest.MonkeyPatch, limit: str, value: int
) -> None:
    """Two nodes' hellos per transaction, by their count or by their instance rows."""
    svc = master.svc
    monkeypatch.setattr(hellos_module, limit, value)
    per_node = fleet(svc, 5, 3, state="unknown")
    nodes = [node_of(svc, ids[0]) for ids in per_node]
    updates = InstanceUpdates(svc)
    orch = svc.orchestrator

    async def storm() -> list[Any]:
        waiting = [
            orch.hellos.submit(node, hello_of(ids, InstanceState.RUNNING, pid=9))
            for node, ids in zip(nodes, per_node, strict=True)
        ]
        waiting.append(orch.hellos.submit(nodes[0], hello_of(per_node[0], InstanceState.FAILED, 0)))
        return list(await asyncio.gather(*waiting))

    try:
        decided = master.call(storm)
    finally:
        updates.close()
    assert len(decided) == 6
    assert updates.count == 3, "six hellos, two per transaction"
    committed = Committed(svc)
    states = [[committed.state(i) for i in ids] for ids in per_node]
    committed.close()
    assert states[0] == ["failed"] * 3, "the node's second hello is the newer word"
    assert states[1:] == [["running"] * 3] * 4
