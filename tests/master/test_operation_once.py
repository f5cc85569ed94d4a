"""A batch start reaches each instance once, also when its node reconnects meanwhile: the hello
that follows the level's rows re-drives them, so the level's `batch` must not go down that
node's new link as well. Real databases (SQLite and PostgreSQL), the agent faked at the channel
seam, as tests/master/test_command_once.py does for single commands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from master.services.operation_steps import OpState
from protocol.messages import Hello, HostInfo, InstanceReport, Result
from protocol.states import InstanceState as S
from tests.master.fake_agent import FakeAgent, until
from tests.master.test_operations import Fleet


@pytest.fixture
def fleet(tmp_path, db_url) -> Iterator[Fleet]:
    f = Fleet(tmp_path, db_url)
    yield f
    f.db.dispose()


def starts(agent: FakeAgent, iid: str) -> int:
    """How many times the agent was told to start `iid`, in a batch or alone."""
    return sum(
        iid in m.get("instance_ids", [m.get("instance_id")])
        for m in agent.sent
        if m["type"] == "start" or (m["type"] == "batch" and m["action"] == "start")
    )


def greeting_agent(fleet: Fleet) -> FakeAgent:
    """A new socket of the node, attached and still greeting, that runs what it is told."""

    def answer(msg: dict[str, Any]) -> Result:
        ids = msg.get("instance_ids") or [msg["instance_id"]]
        reports = [InstanceReport(instance_id=i, state=S.RUNNING) for i in ids]
        fleet.orch.reports.queue(fleet.node_id, reports)
        return Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

    agent = FakeAgent(fleet.agents, fleet.node_id, answer)
    agent.link.greeting = True
    return agent


@pytest.mark.parametrize("applied", ["after the send", "between the rows and the send"])
async def test_a_batch_start_while_the_nodes_hello_waits_reaches_the_agent_once(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, applied: str
) -> None:
    iid = fleet.add_module_instance("web", 1, S.STOPPED)
    agent = greeting_agent(fleet)
    hellos = fleet.orch.hellos
    flush = hellos.flush
    monkeypatch.setattr(hellos, "flush", lambda: None)  # the hello waits in its batch
    report = InstanceReport(iid, S.STOPPED)
    hello = Hello(agent_version="t", host=HostInfo(hostname="h"), instances=[report])
    greeting = asyncio.create_task(fleet.orch.on_hello(agent.link, hello))
    await until(lambda: len(hellos._queued) == 1, "the hello in its batch", 60)
    if applied == "between the rows and the send":
        dispatch = fleet.ops._dispatch

        async def hello_first(*args: Any) -> None:
            flush()  # the hello's batch is applied in the turn after the level's commit
            await dispatch(*args)

        monkeypatch.setattr(fleet.ops, "_dispatch", hello_first)
    op = fleet.begin("start")
    await until(lambda: getattr(fleet.instance(iid), "desired_state", "") == "running", "rows", 60)
    # The level's commands gone (only the climb left), or the operation over already: the
    # hello applied before the send re-drove the start and the agent's report ended the level.
    await until(
        lambda: len(fleet.orch._tasks) == 1 or op.state != OpState.RUNNING,
        "the level's commands",
        60,
    )
    monkeypatch.undo()
    hellos.flush()
    await greeting
    await until(lambda: op.state != OpState.RUNNING, "the operation to end", 60)
    assert op.state == OpState.SUCCEEDED, op.error
    assert starts(agent, iid) == 1, agent.sent
