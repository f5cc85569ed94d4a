"""Batch operations on a real database (SQLite and PostgreSQL), with an agent faked at the
channel seam that reports its instances' new states as a real one does after a `batch`."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from master import heap
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
    """A level is sent a slice per loop turn, then published; a report that lands between
    slices stays the newest view of its instance (its step is judged on it, not on the rows)."""
    monkeypatch.setattr(operations_module, "DISPATCH_SLICE", 1)
    monkeypatch.setattr(operations_module, "COMMAND_SLICE", 1)
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
    crashed: list[str] = []

    def crash_the_later_one(msg: dict[str, Any]) -> None:
        if not crashed:  # the first slice is out
            crashed.append(later := theirs if msg["instance_ids"] == [mine] else mine)
            report = InstanceReport(instance_id=later, state=S.FAILED, error="crashed")
            fleet.orch.reports.queue(node_of[later], [report])

    def obeying(node_id: str) -> Callable[[dict[str, Any]], Result]:
        def answer(msg: dict[str, Any]) -> Result:
            crash_the_later_one(msg)
            ids = msg["instance_ids"]
            fleet.orch.reports.queue(node_id, [obeys(msg["action"], i) for i in ids])
            return Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

        return answer

    FakeAgent(fleet.agents, fleet.node_id, obeying(fleet.node_id))
    FakeAgent(fleet.agents, other, obeying(other))
    op = fleet.begin("stop")
    await ended(op)
    assert op.state == OpState.SUCCEEDED, op.error
    assert [e["state"] for e in fleet.events if e["id"] == crashed[0]] == ["failed", "stopped"]


async def test_a_levels_commands_leave_before_its_views_are_published(fleet):
    """The agents get their commands first; the level's rows are published after them."""
    a = fleet.add_module_instance("a", 1, "running")
    b = fleet.add_module_instance("b", 1, "running")
    seen: list[tuple[str, str]] = []
    fleet.hub.listen("instance", lambda data: seen.append(("view", data["state"])))

    def answer(msg: dict[str, Any]) -> Result:
        seen.append(("command", msg["action"]))
        return Result(reply_to=msg["id"], ok=True, data={"results": {}})

    FakeAgent(fleet.agents, fleet.node_id, answer)
    op = fleet.begin("stop")
    await until(lambda: len(seen) == 3, "the command and both views")
    assert seen == [("command", "stop"), ("view", "stopping"), ("view", "stopping")]
    fleet.orch.reports.queue(fleet.node_id, [obeys("stop", a), obeys("stop", b)])
    await ended(op)
    assert op.state == OpState.SUCCEEDED, op.error


async def test_a_level_cancelled_while_its_commands_leave_publishes_no_stale_view(fleet):
    """An operation ended between its commands and its views no longer knows which newer views
    were published: the rows it publishes then are read again, never older than a report's."""
    ids = [fleet.add_module_instance(name, 1, "running") for name in ("a", "b")]
    ops: list[Op] = []

    def answer(msg: dict[str, Any]) -> Result:
        fleet.ops.cancel(ops[0].id, "tester")
        fleet.orch.reports.queue(fleet.node_id, [obeys("stop", i) for i in msg["instance_ids"]])
        fleet.orch.reports.flush()  # published before the level's views
        return Result(reply_to=msg["id"], ok=True, data={"results": {}})

    FakeAgent(fleet.agents, fleet.node_id, answer)
    ops.append(fleet.begin("stop"))
    await ended(ops[0])
    assert ops[0].error == "cancelled by tester"
    for _ in range(3):
        await asyncio.sleep(0.01)  # whatever the level still publishes
    assert {iid: [e["state"] for e in fleet.events if e["id"] == iid][-1] for iid in ids} == {
        iid: "stopped" for iid in ids
    }


async def test_a_levels_end_goes_out_in_the_event_frame_of_the_views_that_ended_it(fleet):
    """A console's stream writer woken by the last view finds the operation's end queued with
    it: one frame, not a second one a turn later."""
    from master.api.events import _write_events

    class Console:
        def __init__(self) -> None:
            self.frames: list[list[dict[str, Any]]] = []

        async def send_text(self, text: str) -> None:
            self.frames.append(json.loads(text))

    iid = fleet.add_module_instance("a", 1, "running")
    loop = asyncio.get_running_loop()

    def answer(msg: dict[str, Any]) -> Result:  # the process exits a moment later
        report = [obeys("stop", iid)]
        loop.call_later(0.05, fleet.orch.reports.queue, fleet.node_id, report)
        return Result(reply_to=msg["id"], ok=True, data={"results": {}})

    FakeAgent(fleet.agents, fleet.node_id, answer)
    console, sub = Console(), fleet.hub.subscribe()
    sub.batch = True
    writer = asyncio.create_task(_write_events(console, sub))
    op = fleet.begin("stop")
    await ended(op)
    await until(lambda: not sub.queue.qsize(), "the stream written")
    writer.cancel()
    ended_it = next(f for f in console.frames if any(e["data"]["state"] == "stopped" for e in f))
    said = [(e["topic"], e["data"]["state"]) for e in ended_it]
    assert said[-2:] == [("instance", "stopped"), ("operation", "succeeded")], said


async def test_a_wide_operation_is_saved_less_often_than_a_small_one(fleet):
    """Each save of a running operation encodes and publishes all its steps: one of a fleet's
    width waits up to a second between saves, a small one 0.2 s as before."""
    from master.services.operation_store import FLUSH_DELAY, MAX_FLUSH_DELAY

    loop = asyncio.get_running_loop()

    def scheduled_after(steps: int) -> float:
        store = fleet.ops.store
        op = Op(
            id=f"op-{steps}",
            kind="start",
            system_id=fleet.system_id,
            actor="t",
            created_at=0.0,
            steps=[
                Step(instance_id=f"i{n}", name=f"i{n}", node_id="n", level=1) for n in range(steps)
            ],
        )
        store.touch(op)
        handle = store._flush_handle
        assert handle is not None
        handle.cancel()
        store._flush_handle, store._dirty = None, {}
        return handle.when() - loop.time()

    assert scheduled_after(10) <= FLUSH_DELAY
    assert scheduled_after(1000) > MAX_FLUSH_DELAY - 0.1
    assert FLUSH_DELAY < scheduled_after(500) <= 0.5


async def test_a_step_its_agent_refuses_fails_the_level_and_cancels_the_waiting_ones(fleet):
    """The level is judged from the steps touched since its last look: a refusal in the agent's
    answer (no report follows), coming while the level waits, is one of them."""
    a = fleet.add_module_instance("a", 1, "running")
    b = fleet.add_module_instance("b", 1, "running")
    loop = asyncio.get_running_loop()

    def answer(msg: dict[str, Any]) -> None:  # b refused; a stops, but never says so
        results = {a: None, b: {"code": "failed", "message": "permission denied"}}
        reply = Result(reply_to=msg["id"], ok=False, data={"results": results})
        loop.call_later(0.1, agent.link.resolve, reply)

    agent = FakeAgent(fleet.agents, fleet.node_id, answer)
    op = fleet.begin("stop")
    await ended(op)
    assert op.state == OpState.FAILED and op.error == "b: permission denied", op.error
    steps = {st["name"]: st["state"] for st in fleet.row(op).steps}
    assert steps == {"a": "cancelled", "b": "failed"}


async def test_a_step_past_its_time_fails_the_level_naming_it(fleet, monkeypatch):
    a = fleet.add_module_instance("a", 1, "running")
    b = fleet.add_module_instance("b", 1, "running")
    limits = {a: 30.0, b: 0.3}
    monkeypatch.setattr(
        operations_module.operation_plan, "allowed", lambda kind, st, ready: limits[st.instance_id]
    )
    fleet.agent(lambda action, iid: obeys(action, iid) if iid == a else None)  # b never stops
    op = fleet.begin("stop")
    await ended(op)
    assert op.state == OpState.FAILED and op.error == "b did not stop within 0.3 s", op.error
    steps = {st["name"]: st["state"] for st in fleet.row(op).steps}
    assert steps == {"a": "done", "b": "failed"}


@pytest.fixture
def settled_heap() -> Iterator[None]:
    """The master's collector settings (master/heap.py), undone afterwards."""
    threshold = gc.get_threshold()
    heap.settle_heap(collect=False)
    yield
    gc.callbacks[:] = [h for h in gc.callbacks if not isinstance(h, heap.SurvivorFreezer)]
    heap._freezer = None
    gc.set_threshold(*threshold)
    gc.unfreeze()


async def test_a_wide_level_holds_full_collections_off_until_it_is_settled(
    fleet, settled_heap, monkeypatch
):
    """A full collection in a fleet-wide level's turns would hold every API call and console
    behind the loop's longest turns: it waits until the level is settled."""
    monkeypatch.setattr(operations_module, "DEFER_GC_AT", 2)
    monkeypatch.setattr(operations_module, "RESUME_GC_AFTER", 0.0)
    threshold = gc.get_threshold()
    for n in range(2):
        fleet.add_instance(f"p{n}", "stopped")
    seen: list[int] = []

    def obeys_noting(action: str, iid: str) -> InstanceReport:
        seen.append(gc.get_threshold()[2])
        return obeys(action, iid)

    fleet.agent(obeys_noting)
    op = fleet.begin("start")
    await ended(op)
    assert op.state == OpState.SUCCEEDED, op.error
    assert seen == [heap.NEVER, heap.NEVER]  # while the level's commands went out
    await until(lambda: gc.get_threshold() == threshold, "full collections to run again")
