"""Commands for a node another master holds, on a real PostgreSQL server with two masters'
services and the bus between them, the agent faked at the channel seam: the command reaches
the node once through its master and the answer comes back; a master that lost the node, or
never takes the command, or goes away mid-way, leaves a clear error and nothing run twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from master.config import Settings
from master.db import models
from master.hub import Hub
from master.services import remote_commands
from master.services.agents import AgentLink, AgentRegistry
from master.services.bus import Bus
from master.services.cluster_events import ClusterEvents
from master.services.orchestrator import Orchestrator
from master.services.remote_commands import RemoteCommands, RemoteLink
from protocol.errors import ErrorCode, GdosError
from protocol.messages import Hello, HostInfo, InstanceReport, Result, Start
from protocol.states import InstanceState as S
from tests.master.fake_agent import Answer, FakeAgent, World, ok, until


class Peer:
    """One master's services over the shared database, with its bus."""

    def __init__(self, world: World, master_id: str) -> None:
        self.agents = AgentRegistry()
        self.agents.master_id = master_id
        self.hub = Hub()
        self.heard: list[dict[str, Any]] = []
        self.hub.listen("instance", self.heard.append)
        self.orch = Orchestrator(world.db, self.agents, self.hub, Settings(data_dir=Path(".")))
        self.bus = Bus(world.db.url, world.db.engine)
        self.remote = RemoteCommands(world.db, self.agents, self.bus)
        self.remote.attach()
        self.events = ClusterEvents(world.db, self.hub, self.bus, self.agents)
        self.events.attach()
        self.remote.events = self.events
        self.world = world
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.start()
        self.task = asyncio.create_task(self.events.run())

    async def hello(self, instance_id: str, answer: Answer = ok) -> FakeAgent:
        agent = FakeAgent(self.agents, self.world.node_id, answer)
        report = InstanceReport(instance_id, S.STOPPED)
        hello = Hello(agent_version="t", host=HostInfo(hostname="h"), instances=[report])
        await self.orch.on_hello(agent.link, hello)
        return agent

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.orch.close()
        await self.remote.close()
        await self.bus.stop()


@pytest.fixture
async def world(tmp_path: Path, pg_module_db: str) -> AsyncIterator[World]:
    from tests.pg import reset

    reset(pg_module_db)
    w = World(tmp_path, pg_module_db)
    yield w
    w.db.dispose()


@pytest.fixture
async def pair(world: World) -> AsyncIterator[tuple[Peer, Peer]]:
    a, b = Peer(world, "master-a"), Peer(world, "master-b")
    a.agents.peers, b.agents.peers = frozenset({"master-b"}), frozenset({"master-a"})
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def held_by_b(
    world: World, pair: tuple[Peer, Peer], answer: Answer = ok
) -> tuple[str, FakeAgent, AgentLink]:
    """An instance on a node whose agent is connected to B: (its id, the agent, A's link)."""
    a, b = pair
    iid = world.add_instance("web-1", S.STOPPED)
    agent = await b.hello(iid, answer)
    return iid, agent, a.agents.require(world.node_id)


def rows(world: World) -> int:
    with world.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(models.Command)) or 0)


async def test_a_start_sent_to_a_reaches_the_node_b_holds_once_and_a_gets_the_answer(
    world: World, pair: tuple[Peer, Peer]
) -> None:
    a, b = pair
    iid, agent, link = await held_by_b(world, pair)
    assert isinstance(link, RemoteLink) and link.target == "master-b"
    msg = Start(id=link.next_id(), instance_id=iid)
    assert msg.id.startswith("master-a.")  # unique across masters
    result = await link.request(msg, 10)
    assert result.ok and result.reply_to == msg.id
    assert [(m["type"], m["id"]) for m in agent.sent] == [("start", msg.id)]
    assert rows(world) == 0  # collected

    heard_at_start: list[list[str]] = []

    def answer(msg: dict[str, Any]) -> Result:
        heard_at_start.append([e["state"] for e in b.heard])
        return ok(msg)

    agent.answer = answer
    with world.db.session() as s:  # the way a route does it
        inst = s.get(models.Instance, iid)
        assert inst is not None
        await a.orch.start(s, inst)
    await until(lambda: agent.types() == ["start", "start"], "the routed start")
    # A's event (the instance starting) reached B before the command did: B's consoles see
    # "starting" before anything the node answers.
    assert heard_at_start[-1][-1:] == ["starting"], heard_at_start
    await until(lambda: not a.orch._tasks, "A's command task")
    inst = world.instance(iid)
    assert inst is not None and inst.last_error is None and inst.desired_state == "running"


async def test_a_master_that_lost_the_node_sends_nothing_and_says_it_moved(
    world: World, pair: tuple[Peer, Peer]
) -> None:
    iid, at_b, link = await held_by_b(world, pair)
    c = Peer(world, "master-c")  # the agent moves to C; B has not noticed yet
    try:
        await c.hello(iid)
        with pytest.raises(GdosError) as refused:
            await link.request(Start(id=link.next_id(), instance_id=iid), 10)
        assert refused.value.code == ErrorCode.NODE_OFFLINE and "moved" in refused.value.message
        assert at_b.sent == []
    finally:
        await c.close()


async def test_a_command_its_master_never_takes_is_withdrawn(
    world: World, pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    monkeypatch.setattr(remote_commands, "CLAIM_TIMEOUT", 0.3)
    iid, _agent, link = await held_by_b(world, pair)
    await b.bus.stop()  # B hangs: it takes no signal
    with pytest.raises(GdosError) as refused:
        await link.request(Start(id=link.next_id(), instance_id=iid), 10)
    assert "did not take the command" in refused.value.message
    assert rows(world) == 0
    await b.remote.take_missed()  # B wakes: there is nothing left to run
    assert b.remote._tasks == set()
    with world.db.engine.begin() as conn:  # a row nobody collected, from long ago, is pruned
        conn.execute(
            text(
                "INSERT INTO commands (id, node_id, origin, target, epoch, body, timeout, state, "
                "created_at) VALUES ('old', 'n', 'a', 'b', 1, '{}', 1, 'running', 0)"
            )
        )
    a.remote.prune()
    assert rows(world) == 0


async def test_a_master_that_goes_away_mid_command_is_an_error_not_a_wait(
    world: World, pair: tuple[Peer, Peer]
) -> None:
    a, _b = pair
    iid, agent, link = await held_by_b(world, pair, answer=lambda msg: None)  # never answers
    pending = a.orch.spawn(link.request(Start(id=link.next_id(), instance_id=iid), 60))
    await until(lambda: agent.types() == ["start"], "the start on the node")
    a.agents.peers = frozenset()  # B's heartbeat stops: it is offline
    with pytest.raises(GdosError) as lost:
        await pending
    assert lost.value.code == ErrorCode.NODE_OFFLINE and "went away" in lost.value.message
    assert agent.types() == ["start"]


async def test_a_routed_start_decided_before_the_node_reconnected_is_not_sent_again(
    world: World, pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    iid, _first, _link = await held_by_b(world, pair)
    gate = asyncio.Event()
    take = b.remote._run

    async def late(cmd_id: str, node_id: str) -> None:  # B reads its signal late
        await gate.wait()
        await take(cmd_id, node_id)

    monkeypatch.setattr(b.remote, "_run", late)
    await world.act(iid, a.orch.start)  # written under the node's epoch, routed to B
    await until(lambda: rows(world) == 1, "the routed command queued for B")
    again = await b.hello(iid)  # the node reconnects to B: its hello re-drives the start
    await until(lambda: again.types() == ["start"], "the hello's re-drive")
    gate.set()
    await until(lambda: not a.orch._tasks and not b.remote._tasks, "the routed command")
    assert again.types() == ["start"]
    inst = world.instance(iid)
    assert inst is not None and (inst.state, inst.last_error) == (S.STARTING, None)


async def test_a_routed_start_right_after_the_nodes_hello_is_applied_reaches_it_once(
    world: World, pair: tuple[Peer, Peer]
) -> None:
    a, b = pair
    iid = world.add_instance("web-1", S.STOPPED)
    agent = FakeAgent(b.agents, world.node_id)
    agent.link.greeting = True  # as the socket does until the hello is applied
    hello = Hello(
        agent_version="t", host=HostInfo(hostname="h"), instances=[InstanceReport(iid, S.STOPPED)]
    )
    decided = b.orch.hellos.submit(world.node_id, hello, agent.link)
    b.orch.hellos.flush()  # applied; the greeting that awaits it has not resumed yet
    assert decided.done() and not decided.result().actions
    await world.act(iid, a.orch.start)  # decided after that hello read: B must send it
    await until(lambda: agent.types() == ["start"], "the routed start")
    await until(lambda: not a.orch._tasks and not b.remote._tasks, "the routed command")
    assert agent.types() == ["start"]


async def test_a_node_that_reconnects_while_its_master_claims_the_command_gets_nothing_from_it(
    world: World, pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    _a, b = pair
    iid, first, link = await held_by_b(world, pair)
    reconnected: list[FakeAgent] = []
    read_up = b.events.read_up

    async def reconnect_meanwhile(timeout: float = 1.0) -> None:  # B claims while it reads
        again = FakeAgent(b.agents, world.node_id)
        again.link.greeting = True  # its hello is not applied yet: it re-drives what it reads
        reconnected.append(again)
        await read_up(timeout)

    monkeypatch.setattr(b.events, "read_up", reconnect_meanwhile)
    with pytest.raises(GdosError) as moved:
        await link.request(Start(id=link.next_id(), instance_id=iid), 10)
    assert moved.value.code == ErrorCode.NODE_OFFLINE and "moved" in moved.value.message
    assert first.sent == [] and reconnected and reconnected[0].sent == []
    assert rows(world) == 0  # answered and collected, not left for the timeout


async def test_a_batch_level_routed_after_the_node_moved_again_is_not_sent_twice(
    world: World, pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from master.services.operations import Operations
    from tests.master.test_operation_once import starts

    a, b = pair
    with world.db.session() as s:
        mod = models.Module(system_id=world.system_id, name="web", package_name="web")
        s.add(mod)
        s.commit()
        module_id = mod.id
    iid = world.add_instance("web-1", S.STOPPED, module_id=module_id)
    first = await b.hello(iid)
    c = Peer(world, "master-c")
    await c.start()
    a.agents.peers = frozenset({"master-b", "master-c"})
    ops = Operations(world.db, a.orch, a.agents, a.hub)
    moved: list[FakeAgent] = []
    dispatch = ops._dispatch

    async def node_moves_first(*args: Any) -> None:  # after the level's commit, before its send
        moved.append(await c.hello(iid))  # C's hello reads the level's rows: it re-drives them
        await dispatch(*args)

    monkeypatch.setattr(ops, "_dispatch", node_moves_first)
    try:
        with world.db.session() as s:
            system = s.get(models.System, world.system_id)
            assert system is not None
            ops.begin(s, system, "start", "tester")
        await until(lambda: bool(moved) and starts(moved[0], iid) >= 1, "C's re-drive", 60)
        await until(
            lambda: len(a.orch._tasks) <= 1 and rows(world) == 0 and not c.remote._tasks,
            "the level's command",
            60,
        )
        assert starts(moved[0], iid) == 1, moved[0].sent
        assert first.sent == []
    finally:
        await c.close()
