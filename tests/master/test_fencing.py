"""Node ownership fenced by an epoch, on a real database (SQLite and PostgreSQL), with two
masters' services over it and the agents faked at the channel seam: a master that lost a node
can neither mark it offline nor command it, and a starting master leaves alone the nodes
another online master holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.agents import AgentRegistry
from master.services.directory import Directory
from master.services.masters import Masters, SeveralMastersRefused
from master.services.nodes import Nodes
from master.services.orchestrator import Orchestrator
from protocol.errors import ErrorCode, GdosError
from protocol.messages import Hello, HostInfo, InstanceReport
from protocol.states import InstanceState as S
from tests.master.fake_agent import FakeAgent, World


class Holder:
    """One master's services over the shared database."""

    def __init__(self, world: World, master_id: str) -> None:
        self.agents = AgentRegistry()
        self.agents.master_id = master_id
        hub = Hub()
        self.orch = Orchestrator(world.db, self.agents, hub, Settings(data_dir=Path(".")))
        self.nodes = Nodes(world.db, hub, self.agents, self.orch)
        self.world = world

    async def hello(self, instance_id: str) -> FakeAgent:
        """The node's agent connects here and says hello, reporting its instance running."""
        agent = FakeAgent(self.agents, self.world.node_id)
        report = InstanceReport(instance_id, S.RUNNING, pid=42)
        hello = Hello(agent_version="t", host=HostInfo(hostname="h"), instances=[report])
        await self.orch.on_hello(agent.link, hello)
        return agent


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    w = World(tmp_path, db_url)
    yield w
    w.db.dispose()


def node_row(world: World) -> tuple[str | None, int]:
    with world.db.session() as s:
        node = s.get(models.Node, world.node_id)
        assert node is not None
        return node.master_id, node.epoch


async def taken_by_b(world: World) -> tuple[str, Holder, Holder, FakeAgent]:
    """An instance whose node said hello to master A, then moved to B (PostgreSQL only):
    (instance id, A, B, A's now stale connection)."""
    if not world.db.is_postgres:
        pytest.skip("one master on SQLite: no other master can take its nodes")
    iid = world.add_instance("web-1", S.RUNNING, "running")
    a, b = Holder(world, "master-a"), Holder(world, "master-b")
    at_a = await a.hello(iid)
    await b.hello(iid)
    return iid, a, b, at_a


async def test_a_master_that_lost_its_node_cannot_mark_it_offline(world: World) -> None:
    iid = world.add_instance("web-1", S.RUNNING, "running")
    a, b = Holder(world, "master-a"), Holder(world, "master-b")
    at_a = await a.hello(iid)
    at_b = await b.hello(iid)  # the agent moved: B's hello takes the node
    assert (at_a.link.epoch, at_b.link.epoch) == (1, 2)
    assert node_row(world) == ("master-b", 2)

    a.agents.detach(at_a.link)  # A's late disconnect (a stopped process waking up)
    assert a.nodes.offline(at_a.link) is False
    assert node_row(world) == ("master-b", 2)
    inst = world.instance(iid)
    assert inst is not None and inst.state == S.RUNNING

    b.agents.detach(at_b.link)  # the holder's own disconnect counts
    assert b.nodes.offline(at_b.link) is True
    assert node_row(world) == (None, 2)
    inst = world.instance(iid)
    assert inst is not None and inst.state == S.UNKNOWN


async def test_a_master_that_lost_its_node_cannot_command_it(world: World) -> None:
    iid, a, _b, at_a = await taken_by_b(world)
    with world.db.session() as s:
        inst = s.get(models.Instance, iid)
        assert inst is not None
        with pytest.raises(GdosError) as refused:
            await a.orch.stop(s, inst)
    assert refused.value.code == ErrorCode.NODE_OFFLINE
    assert "another master" in refused.value.message
    assert at_a.sent == [] and not a.agents.is_online(world.node_id)


async def test_reports_over_a_stale_link_are_dropped(world: World) -> None:
    iid, a, b, at_a = await taken_by_b(world)
    stale = InstanceReport(iid, S.FAILED, exit_code=1)  # sent to A before the agent moved
    a.orch.reports.queue(world.node_id, [stale], at_a.link.epoch)
    a.orch.reports.flush()
    inst = world.instance(iid)
    assert inst is not None and inst.state == S.RUNNING
    b.orch.reports.queue(world.node_id, [stale], 2)  # the holder's are applied
    b.orch.reports.flush()
    inst = world.instance(iid)
    assert inst is not None and inst.state == S.FAILED


def masters_for(
    world: World, tmp_path: Path, name: str, store: Literal["local", "minio"] = "minio"
) -> Masters:
    settings = Settings(data_dir=tmp_path / name, store_type=store, public_url=f"http://{name}")
    return Masters(world.db, settings, AgentRegistry())


async def test_a_starting_master_marks_unknown_only_nodes_whose_master_is_gone(
    world: World, tmp_path: Path
) -> None:
    if not world.db.is_postgres:
        pytest.skip("one master on SQLite: every node is its own at its start")
    alive, dead = masters_for(world, tmp_path, "alive"), masters_for(world, tmp_path, "dead")
    alive.register()
    dead.register()
    dead.retire()
    held = world.add_instance("held-1", S.RUNNING, "running")
    with world.db.session() as s:
        other = models.Node(secret_hash="n2", hostname="other", master_id=dead.id)
        s.add(other)
        s.flush()
        orphan = models.Instance(
            system_id=world.system_id, node_id=other.id, name="orphan-1", state=S.RUNNING
        )
        s.add(orphan)
        s.get(models.Node, world.node_id).master_id = alive.id  # type: ignore[union-attr]
        s.commit()

    starting = masters_for(world, tmp_path, "starting")
    starting.register()
    assert world.orch.mark_node_unknown(None, starting.gone)
    assert world.instance(held).state == S.RUNNING  # type: ignore[union-attr]
    assert world.instance(orphan.id).state == S.UNKNOWN  # type: ignore[union-attr]


async def test_masters_register_and_a_local_store_refuses_to_run_beside_another(
    world: World, tmp_path: Path
) -> None:
    first = masters_for(world, tmp_path, "m1")
    first.register()
    again = masters_for(world, tmp_path, "m1", store="local")
    again.register()  # the same master (its data directory) starting again is not another
    assert again.id == first.id
    if world.db.is_postgres:
        with pytest.raises(SeveralMastersRefused, match="with --store-type local each master"):
            masters_for(world, tmp_path, "m2", store="local").register()
        again.retire()
        alone = masters_for(world, tmp_path, "m1", store="local")
        alone.register()  # alone on the database, the local store is fine
        with pytest.raises(SeveralMastersRefused, match="online on this database with --store"):
            masters_for(world, tmp_path, "m4").register()  # not beside a local-store master
        first = masters_for(world, tmp_path, "m1")
        first.register()  # the same master, now on S3
    second = masters_for(world, tmp_path, "m3")
    second.register()
    listed = {m["id"]: m for m in second.listing()}
    with world.db.session() as s:
        rows = list(s.scalars(select(models.Master.id)))
    assert set(listed) == set(rows) and len(rows) == 2
    assert listed[second.id]["status"] == "online" and listed[second.id]["url"] == "http://m3"
    # On SQLite a master is alone and leads; on PostgreSQL only a lease session leads.
    leaders = {m["id"] for m in listed.values() if m["leader"]}
    assert leaders == (set() if world.db.is_postgres else {second.id})
    expected = "online" if world.db.is_postgres else "offline"  # on SQLite each is alone
    assert listed[first.id]["status"] == expected
    first.retire()
    assert {m["id"]: m["status"] for m in second.listing()}[first.id] == "offline"


async def test_a_hello_ends_a_stopped_masters_transaction_instead_of_waiting(
    world: World,
) -> None:
    """Master A stopped (SIGSTOP) in the middle of a transaction on the node's rows: B's hello
    ends that transaction and takes the node, without waiting for A to wake or for the
    server's idle timeout; A's transaction, should it wake, commits nothing."""
    if not world.db.is_postgres:
        pytest.skip("one master on SQLite: no other master holds its rows")
    iid = world.add_instance("web-1", S.RUNNING, "running")
    stopped = Database(world.db.url)  # master A's pool: its sessions carry A's tag
    held = stopped.engine.connect()
    bystander = stopped.engine.connect()
    held.execute(text("SET idle_in_transaction_session_timeout = 0"))  # only we end it
    bystander.execute(text("SET idle_in_transaction_session_timeout = 0"))
    held.commit()
    bystander.commit()
    held.execute(select(models.Instance.id).where(models.Instance.id == iid).with_for_update())
    held.execute(update(models.Node).values(last_seen=1.0))  # what A was writing when it stopped
    bystander.execute(select(models.Master.id))  # idle in a transaction, locking nothing taken
    pid = held.execute(text("SELECT pg_backend_pid()")).scalar()
    rescued = threading.Event()

    def rescue() -> None:  # the test's own way out, should the hello wait for A
        rescued.set()
        with world.db.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})

    timer = threading.Timer(60, rescue)
    timer.start()
    try:
        b = Holder(world, "master-b")
        await b.hello(iid)
    finally:
        timer.cancel()
    try:
        assert not rescued.is_set(), "the hello waited for the stopped master's transaction"
        assert node_row(world) == ("master-b", 1)
        with pytest.raises(OperationalError):  # A wakes: its transaction is gone
            held.commit()
        bystander.commit()  # a session not in the way is left alone
    finally:
        held.invalidate()
        bystander.close()
        stopped.dispose()


async def test_a_hello_that_changes_a_state_is_applied_where_the_directory_learns_its_rows(
    world: World,
) -> None:
    """Several masters: a hello's rows go to the directory (instances another master made).
    A start that never arrived (the node reports stopped what should run, as a command lost
    in a failover leaves it) is decided again with the state as an `InstanceState`: the hello
    is applied all the same, not failed with the rest of its batch (its agent would dial
    again)."""
    iid = world.add_instance("web-1", S.RUNNING, "running")
    holder = Holder(world, "master-b")
    directory = Directory(Hub())
    holder.orch.hellos.on_rows = directory.learn
    agent = FakeAgent(holder.agents, world.node_id)
    report = InstanceReport(iid, S.STOPPED, pid=0)
    hello = Hello(agent_version="t", host=HostInfo(hostname="h"), instances=[report])
    decided = await holder.orch.hellos.submit(world.node_id, hello, agent.link)
    assert ("start", iid) in decided.actions
    assert directory.instances[iid].state == "starting"
    assert type(directory.instances[iid].state) is str
