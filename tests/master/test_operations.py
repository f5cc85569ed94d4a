"""Batch operations on a real database (SQLite and PostgreSQL), with an agent faked at the
channel seam that reports its instances' new states as a real one does after a `batch`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from master.db import models
from master.services import operations as operations_module
from master.services.operation_steps import Op, OpState, Step
from master.services.operations import Operations
from protocol.messages import InstanceReport, Result
from protocol.states import InstanceState as S
from tests.master.fake_agent import FakeAgent, World, until


class Fleet(World):
    def __init__(self, tmp_path, db_url=None) -> None:
        super().__init__(tmp_path, db_url)
        self.ops = Operations(self.db, self.orch, self.agents, self.hub)
        self.published: list[dict[str, Any]] = []
        self.hub.listen("operation", self.published.append)

    def add_module_instance(self, name: str, start_order: int, state: str) -> str:
        with self.db.session() as s:
            mod = models.Module(
                system_id=self.system_id, name=name, package_name=name, start_order=start_order
            )
            s.add(mod)
            s.commit()
            module_id = mod.id
        return self.add_instance(name, state, module_id=module_id)

    def agent(self, outcome: Callable[[str, str], InstanceReport | None]) -> FakeAgent:
        """An agent that takes every batch and then reports `outcome(action, id)` per instance."""

        def answer(msg: dict[str, Any]) -> Result:
            ids = msg["instance_ids"]
            reports = [r for r in (outcome(msg["action"], i) for i in ids) if r is not None]
            self.orch.reports.queue(self.node_id, reports)
            return Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

        return FakeAgent(self.agents, self.node_id, answer)

    def begin(self, kind: str) -> Op:
        with self.db.session() as s:
            system = s.get(models.System, self.system_id)
            assert system is not None
            return self.ops.begin(s, system, kind, "tester")

    def row(self, op: Op) -> models.Operation:
        with self.db.session() as s:
            row = s.get(models.Operation, op.id)
            assert row is not None
            s.expunge(row)
            return row


def obeys(action: str, iid: str) -> InstanceReport:
    return InstanceReport(instance_id=iid, state=S.RUNNING if action == "start" else S.STOPPED)


@pytest.fixture
def fleet(tmp_path, db_url) -> Iterator[Fleet]:
    f = Fleet(tmp_path, db_url)
    yield f
    f.db.dispose()


def batches(agent: FakeAgent) -> list[tuple[str, list[str]]]:
    return [(m["action"], m["instance_ids"]) for m in agent.sent]


async def ended(op: Op) -> None:
    await until(lambda: op.state != OpState.RUNNING, "the operation to end")


async def test_start_climbs_the_levels_in_order_and_is_saved_as_succeeded(fleet):
    web = fleet.add_module_instance("web", 2, "stopped")
    db = fleet.add_module_instance("db", 1, "stopped")
    agent = fleet.agent(obeys)
    op = fleet.begin("start")
    await ended(op)
    assert op.state == OpState.SUCCEEDED, op.error
    assert batches(agent) == [("start", [db]), ("start", [web])]
    row = fleet.row(op)
    assert (row.state, row.level) == ("succeeded", 2)
    assert [st["state"] for st in row.steps] == ["done", "done"]
    assert fleet.published[-1]["state"] == "succeeded"


async def test_stop_descends_and_a_running_instance_is_not_started_twice(fleet):
    web = fleet.add_module_instance("web", 2, "running")
    db = fleet.add_module_instance("db", 1, "running")
    agent = fleet.agent(obeys)
    op = fleet.begin("stop")
    await ended(op)
    assert batches(agent) == [("stop", [web]), ("stop", [db])]
    op = fleet.begin("start")
    await ended(op)
    assert op.state == OpState.SUCCEEDED
    agent.sent.clear()
    op = fleet.begin("start")  # all running: nothing goes down, the operation still succeeds
    await ended(op)
    assert op.state == OpState.SUCCEEDED and agent.sent == []


async def test_the_first_failed_step_ends_the_climb_naming_the_instance_and_the_reason(fleet):
    web = fleet.add_module_instance("web", 2, "stopped")
    db = fleet.add_module_instance("db", 1, "stopped")

    def db_crashes(action: str, iid: str) -> InstanceReport:
        return InstanceReport(instance_id=iid, state=S.FAILED, error="port 5432 in use")

    agent = fleet.agent(db_crashes)
    op = fleet.begin("start")
    await ended(op)
    assert op.state == OpState.FAILED
    assert op.error == "db failed: port 5432 in use"
    assert batches(agent) == [("start", [db])]  # web was never started
    steps = {st["name"]: st["state"] for st in fleet.row(op).steps}
    assert steps == {"db": "failed", "web": "skipped"}
    inst = fleet.instance(web)
    assert inst and inst.state == "stopped"


async def test_an_offline_node_refuses_the_level_before_anything_is_sent(fleet):
    fleet.add_module_instance("db", 1, "stopped")
    op = fleet.begin("start")
    await ended(op)
    assert op.state == OpState.FAILED and "is offline" in (op.error or "")


async def test_a_newer_operation_supersedes_a_running_one(fleet):
    fleet.add_module_instance("db", 1, "stopped")
    fleet.agent(lambda action, iid: obeys(action, iid) if action == "stop" else None)
    first = fleet.begin("start")
    await until(lambda: first.level == 1, "the first level")
    second = fleet.begin("stop")
    assert first.state == OpState.FAILED
    assert first.error == "superseded by a newer stop operation"
    await ended(second)
    assert second.state == OpState.SUCCEEDED
    assert [st["state"] for st in fleet.row(first).steps] == ["cancelled"]


async def test_an_operation_left_running_resumes_once_its_node_is_reconciled(fleet):
    db = fleet.add_module_instance("db", 1, "unknown")
    step = Step(instance_id=db, name="db", node_id=fleet.node_id, level=1)
    with fleet.db.session() as s:
        row = models.Operation(
            kind="start", system_id=fleet.system_id, state="running", steps=[step.record()]
        )
        s.add(row)
        s.commit()
        operation_id = row.id
    agent = fleet.agent(obeys)
    fleet.orch.reconciled.add(fleet.node_id)
    fleet.ops.resume_all()
    op = fleet.ops.live[operation_id]
    await ended(op)
    assert op.state == OpState.SUCCEEDED and op.resumed == 1
    assert batches(agent) == [("start", [db])]
    assert fleet.row(op).resumed == 1


async def test_a_report_during_a_level_dispatch_is_not_overwritten_by_the_rows(fleet, monkeypatch):
    """A level is published and sent a slice per loop turn; a report that lands between slices
    stays the newest view of its instance (its step is judged on it, not on the rows)."""
    monkeypatch.setattr(operations_module, "DISPATCH_SLICE", 1)
    mine = fleet.add_module_instance("a", 1, "running")
    with fleet.db.session() as s:
        node = models.Node(secret_hash="n2", hostname="other")
        s.add(node)
        s.commit()
        other = node.id
        inst = models.Instance(
            system_id=fleet.system_id,
            node_id=other,
            name="b",
            state="running",
            desired_state="running",
            module_id=fleet.instance(mine).module_id,
        )
        s.add(inst)
        s.commit()
        theirs = inst.id
    node_of = {mine: fleet.node_id, theirs: other}
    fleet.agent(obeys)

    def obeys_too(msg: dict[str, Any]) -> Result:
        ids = msg["instance_ids"]
        fleet.orch.reports.queue(other, [obeys(msg["action"], i) for i in ids])
        return Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

    FakeAgent(fleet.agents, other, obeys_too)
    crashed: list[str] = []

    def crash_the_later_one(data: dict[str, Any]) -> None:
        if data["state"] == "stopping" and not crashed:  # the first slice is out
            crashed.append(later := theirs if data["id"] == mine else mine)
            report = InstanceReport(instance_id=later, state=S.FAILED, error="crashed")
            fleet.orch.reports.queue(node_of[later], [report])

    fleet.hub.listen("instance", crash_the_later_one)
    op = fleet.begin("stop")
    await ended(op)
    assert op.state == OpState.SUCCEEDED, op.error
    assert [e["state"] for e in fleet.events if e["id"] == crashed[0]] == ["failed", "stopped"]
