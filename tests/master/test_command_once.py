"""A start reaches the agent at most once per API call, also when the node reconnects meanwhile:
the hello that follows re-drives the desired state it reads, so a command decided while that
hello waits, or under the node's earlier connection, must not go down the new one as well. Real
databases (SQLite and PostgreSQL), agents faked at the channel seam."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from master.services.agents import AgentLink
from protocol.errors import ErrorCode, GdosError
from protocol.messages import Hello, HostInfo, InstanceReport
from protocol.states import InstanceState as S
from tests.master.fake_agent import FakeAgent, World, until


@pytest.fixture
def world(tmp_path, db_url) -> Iterator[World]:
    w = World(tmp_path, db_url)
    yield w
    w.db.dispose()


def hello_stopped(instance_id: str) -> Hello:
    report = InstanceReport(instance_id, S.STOPPED)
    return Hello(agent_version="t", host=HostInfo(hostname="h"), instances=[report])


def connect(world: World) -> FakeAgent:
    """A new socket of the node, attached and still greeting (as the agent socket does)."""
    agent = FakeAgent(world.agents, world.node_id)
    agent.link.greeting = True
    return agent


async def test_a_start_while_the_nodes_hello_waits_in_its_batch_reaches_the_agent_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = world.add_instance("web-1", S.STOPPED)
    agent = connect(world)
    hellos = world.orch.hellos
    monkeypatch.setattr(hellos, "flush", lambda: None)  # the batch is not applied yet
    greeting = asyncio.create_task(world.orch.on_hello(agent.link, hello_stopped(iid)))
    await until(lambda: len(hellos._queued) == 1, "the hello in its batch")
    try:
        await world.act(iid, world.orch.start)
    except GdosError as exc:  # refused, with nothing written: the hello changes nothing
        assert exc.code == ErrorCode.NODE_OFFLINE and "nothing was done" in exc.message
        refused = True
    else:
        refused = False
    monkeypatch.undo()
    hellos.flush()
    await greeting
    await until(lambda: not world.orch._tasks, "the commands to finish")
    assert agent.types().count("start") == (0 if refused else 1)
    inst = world.instance(iid)
    assert inst is not None and inst.desired_state == ("stopped" if refused else "running")
    await world.act(iid, world.orch.start)  # greeted: the start goes down, once
    await until(lambda: not world.orch._tasks, "the start to finish")
    assert agent.types().count("start") == 1


async def test_a_failure_on_the_nodes_old_connection_leaves_the_newer_hellos_start_alone(
    world: World,
) -> None:
    iid = world.add_instance("web-1", S.STOPPED)
    old = FakeAgent(world.agents, world.node_id, answer=lambda msg: None)  # lost on the wire
    await world.orch.on_hello(old.link, hello_stopped(iid))
    await world.act(iid, world.orch.start)
    await until(lambda: old.types() == ["start"], "the start on the old connection")
    new = connect(world)  # the agent never got it, and reconnects
    await world.orch.on_hello(new.link, hello_stopped(iid))
    await until(lambda: new.types() == ["start"], "the hello's re-drive")
    old_link: AgentLink = old.link
    old_link.fail_pending()  # the old socket's end is noticed only now
    await until(lambda: not world.orch._tasks, "the commands to finish")
    inst = world.instance(iid)
    assert inst is not None and (inst.state, inst.last_error) == (S.STARTING, None)
    await world.act(iid, world.orch.start)  # a client that retries: already starting
    await until(lambda: not world.orch._tasks, "the commands to finish")
    assert new.types() == ["start"]
