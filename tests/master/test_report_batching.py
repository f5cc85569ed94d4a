"""Agent reports are applied at the end of the event-loop turn they arrive in: all of them in
one transaction, in order, each node only touching its own instances."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sqlalchemy import event

from master.db import models
from protocol.messages import Hello, HostInfo, InstanceReport
from protocol.states import InstanceState
from tests.master.inprocess import make_app, running, services_of


def test_reports_of_one_loop_turn_go_in_one_transaction_in_order(tmp_path):
    app = make_app(tmp_path / "m")
    with running(app) as (client, _):
        svc = services_of(app)
        with svc.db.session() as s:
            a, b = models.Node(secret_hash="a"), models.Node(secret_hash="b")
            system = models.System(name="s")
            s.add_all([a, b, system])
            s.flush()
            i1 = models.Instance(system_id=system.id, node_id=a.id, name="i1", state="starting")
            i2 = models.Instance(system_id=system.id, node_id=b.id, name="i2", state="starting")
            s.add_all([i1, i2])
            s.commit()
            node_a, node_b, id1, id2 = a.id, b.id, i1.id, i2.id
        seen: list[tuple[str, str]] = []
        svc.orchestrator.feed.listeners.append(lambda view: seen.append((view.id, view.state)))
        updates: list[str] = []  # UPDATEs of instance rows (other tasks may commit meanwhile)

        def listener(conn, cursor, statement, parameters, context, executemany) -> None:
            if statement.lstrip().upper().startswith("UPDATE INSTANCES"):
                updates.append(statement)

        event.listen(svc.db.engine, "before_cursor_execute", listener)
        orch = svc.orchestrator

        async def burst() -> int:
            orch.reports.queue(node_a, [InstanceReport(id1, InstanceState.RUNNING, pid=11)])
            orch.reports.queue(node_b, [InstanceReport(id2, InstanceState.RUNNING, pid=22)])
            orch.reports.queue(node_a, [InstanceReport(id1, InstanceState.STOPPED)])
            # Node b cannot speak for node a's instance: ignored.
            orch.reports.queue(node_b, [InstanceReport(id1, InstanceState.FAILED)])
            before = len(updates)
            await asyncio.sleep(0)  # the end of this turn: the flush runs
            return before

        try:
            assert client.portal.call(burst) == 0, "applied before the turn ended"
        finally:
            event.remove(svc.db.engine, "before_cursor_execute", listener)
        assert len(updates) == 1, updates  # one executemany for all of them
        with svc.db.session() as s:
            r1, r2 = s.get(models.Instance, id1), s.get(models.Instance, id2)
            assert r1 is not None and r2 is not None
            assert (r1.state, r1.pid) == ("stopped", None)  # the later report wins
            assert (r2.state, r2.pid) == ("running", 22)
        assert sorted(seen) == sorted([(id1, "stopped"), (id2, "running")])


def test_hello_publishes_each_changed_instance_once_and_nothing_unchanged(tmp_path):
    """After a reconnect the whole node says hello: consoles get what changed, once each, not
    the node's every instance (a master restart sends the fleet's every hello at once)."""
    app = make_app(tmp_path / "m")
    with running(app) as (client, _):
        svc = services_of(app)
        with svc.db.session() as s:
            node = models.Node(secret_hash="a")
            system = models.System(name="s")
            s.add_all([node, system])
            s.flush()
            same = models.Instance(
                system_id=system.id,
                node_id=node.id,
                name="same",
                state="running",
                pid=11,
                desired_state="running",
                health="unknown",
            )
            moved = models.Instance(
                system_id=system.id,
                node_id=node.id,
                name="moved",
                state="unknown",
                desired_state="running",
            )
            s.add_all([same, moved])
            s.commit()
            node_id, same_id, moved_id = node.id, same.id, moved.id
        orch = svc.orchestrator
        seen: list[tuple[str, str, int | None]] = []
        orch.feed.listeners.append(lambda view: seen.append((view.id, view.state, view.pid)))
        hello = Hello(
            agent_version="t",
            host=HostInfo(hostname="h"),
            instances=[
                InstanceReport(same_id, InstanceState.RUNNING, pid=11),
                InstanceReport(moved_id, InstanceState.RUNNING, pid=22),
                InstanceReport("not-known-here", InstanceState.RUNNING, pid=33),
            ],
        )
        link = SimpleNamespace(node_id=node_id)
        unmanaged = client.portal.call(orch.on_hello, link, hello)
        assert unmanaged == ["not-known-here"]
        assert seen == [(moved_id, "running", 22)]
        with svc.db.session() as s:
            row = s.get(models.Instance, moved_id)
            assert row is not None and (row.state, row.pid) == ("running", 22)


def test_a_report_that_changes_nothing_is_neither_written_nor_published(tmp_path):
    """An agent may say the same twice (a state saved, then the same state once more): the
    second report costs no UPDATE and no event."""
    app = make_app(tmp_path / "m")
    with running(app) as (client, _):
        svc = services_of(app)
        with svc.db.session() as s:
            node = models.Node(secret_hash="a")
            system = models.System(name="s")
            s.add_all([node, system])
            s.flush()
            inst = models.Instance(system_id=system.id, node_id=node.id, name="i", state="stopping")
            s.add(inst)
            s.commit()
            node_id, iid = node.id, inst.id
        seen: list[str] = []
        svc.orchestrator.feed.listeners.append(lambda view: seen.append(view.state))
        updates: list[str] = []

        def listener(conn, cursor, statement, parameters, context, executemany) -> None:
            if statement.lstrip().upper().startswith("UPDATE INSTANCES"):
                updates.append(statement)

        event.listen(svc.db.engine, "before_cursor_execute", listener)
        reports = svc.orchestrator.reports

        async def report(state: InstanceState) -> None:
            reports.queue(node_id, [InstanceReport(iid, state, exit_code=0)])
            await asyncio.sleep(0)  # the end of this turn: the flush runs

        try:
            client.portal.call(report, InstanceState.STOPPED)
            client.portal.call(report, InstanceState.STOPPED)
        finally:
            event.remove(svc.db.engine, "before_cursor_execute", listener)
        assert (len(updates), seen) == (1, ["stopped"])
