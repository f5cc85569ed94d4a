"""The orchestrator on a real database (SQLite and PostgreSQL) with an agent faked at the channel seam: what each verb
writes, which command goes down, and how an answer (or its absence) lands on the instance."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from master.db import models
from protocol.errors import GdosError
from protocol.messages import Hello, HostInfo, InstanceReport
from protocol.states import InstanceState as S
from tests.master.fake_agent import FakeAgent, World, refuse, until


@pytest.fixture
def world(tmp_path, db_url) -> Iterator[World]:
    w = World(tmp_path, db_url)
    yield w
    w.db.dispose()


async def test_start_sets_starting_sends_one_start_and_never_a_second_process(world):
    agent = FakeAgent(world.agents, world.node_id)
    iid = world.add_instance("web-1", "stopped")
    await world.act(iid, world.orch.start)
    inst = world.instance(iid)
    assert inst and (inst.state, inst.desired_state) == ("starting", "running")
    await until(lambda: agent.types() == ["start"], "the start command")
    assert agent.sent[0]["instance_id"] == iid
    await world.act(iid, world.orch.start)  # still starting: nothing more goes down
    await until(lambda: not world.orch._tasks, "the command to finish")
    assert agent.types() == ["start"]
    assert world.events[0]["state"] == "starting"


async def test_a_refused_command_lands_on_the_instance_with_the_agents_reason(world):
    agent = FakeAgent(world.agents, world.node_id, refuse("no such file: app.py", "failed"))
    iid = world.add_instance("web-1", "stopped")
    await world.act(iid, world.orch.start)
    await until(lambda: world.instance(iid).state == "failed", "the failure")
    inst = world.instance(iid)
    assert inst and inst.last_error == "no such file: app.py"
    assert agent.types() == ["start"]


async def test_a_node_lost_during_a_start_fails_the_start_and_a_stop_becomes_unknown(world):
    agent = FakeAgent(world.agents, world.node_id, answer=lambda msg: None)
    starting = world.add_instance("web-1", "stopped")
    stopping = world.add_instance("web-2", "running", "running")
    await world.act(starting, world.orch.start)
    await world.act(stopping, world.orch.stop)
    await until(lambda: len(agent.sent) == 2, "both commands")
    world.agents.detach(agent.link)
    await until(lambda: not world.orch._tasks, "the commands to give up")
    a, b = world.instance(starting), world.instance(stopping)
    assert a and (a.state, a.last_error) == ("failed", f"node {world.node_id} disconnected")
    assert b and b.state == "unknown"


async def test_stop_of_a_stopped_instance_sends_nothing_and_restart_stops_then_starts(world):
    agent = FakeAgent(world.agents, world.node_id)
    stopped = world.add_instance("web-1", "stopped")
    running = world.add_instance("web-2", "running", "running")
    await world.act(stopped, world.orch.stop)
    await world.act(running, world.orch.restart)
    inst = world.instance(running)
    assert inst and inst.state == "stopping"
    await until(lambda: agent.types() == ["stop", "start"], "stop, then start")
    assert {m["instance_id"] for m in agent.sent} == {running}


async def test_busy_instances_and_offline_nodes_are_refused_in_words(world):
    busy = world.add_instance("web-1", "deploying")
    offline = world.add_instance("web-2", "stopped")
    with pytest.raises(GdosError, match="is deploying; wait"):
        await world.act(busy, world.orch.start)
    with pytest.raises(GdosError, match="is offline"):
        await world.act(offline, world.orch.start)
    with pytest.raises(GdosError, match=r"\?force=true"):
        await world.act(offline, world.orch.destroy)


async def test_destroy_forgets_the_instance_once_the_agent_has_or_at_once_when_forced(world):
    agent = FakeAgent(world.agents, world.node_id)
    online = world.add_instance("web-1", "running", "running")
    await world.act(online, world.orch.destroy)
    await until(lambda: world.instance(online) is None, "the row to go")
    assert agent.types() == ["destroy"]
    assert world.events[-1]["deleted"] and world.events[-1]["state"] == "destroyed"
    world.agents.detach(agent.link)
    forced = world.add_instance("web-2", "running", "running")
    await world.act(forced, world.orch.destroy, force=True)
    assert world.instance(forced) is None and agent.types() == ["destroy"]


async def test_hello_updates_the_node_redrives_lost_commands_and_names_unmanaged_ones(world):
    agent = FakeAgent(world.agents, world.node_id)
    lost_start = world.add_instance("web-1", "unknown", "running")
    lost_stop = world.add_instance("web-2", "unknown", "stopped")
    hello = Hello(
        agent_version="9.9",
        host=HostInfo(hostname="new"),
        instances=[
            InstanceReport(instance_id=lost_start, state=S.STOPPED),
            InstanceReport(instance_id=lost_stop, state=S.RUNNING, pid=5),
            InstanceReport(instance_id="stray", state=S.RUNNING),
        ],
    )
    assert await world.orch.on_hello(agent.link, hello) == ["stray"]
    await until(lambda: len(agent.sent) == 2, "the re-driven commands")
    assert sorted((m["type"], m["instance_id"]) for m in agent.sent) == sorted(
        [("start", lost_start), ("stop", lost_stop)]
    )
    a, b = world.instance(lost_start), world.instance(lost_stop)
    assert a and b and (a.state, b.state, b.pid) == ("starting", "stopping", 5)
    with world.db.session() as s:
        node = s.get(models.Node, world.node_id)
        assert node and (node.hostname, node.agent_version) == ("new", "9.9")
    assert world.node_id in world.orch.reconciled


async def test_a_node_going_away_makes_its_processes_unknown_but_keeps_deploys_and_destroys(world):
    running = world.add_instance("web-1", "running", "running")
    deploying = world.add_instance("web-2", "deploying")
    world.orch.reconciled.add(world.node_id)
    world.orch.mark_node_unknown(world.node_id)
    assert world.instance(running).state == "unknown"
    assert world.instance(deploying).state == "deploying"
    assert world.node_id not in world.orch.reconciled
    assert [e["state"] for e in world.events] == ["unknown"]


async def test_deploy_inserts_a_numbered_instance_and_sends_its_package(world):
    agent = FakeAgent(world.agents, world.node_id)
    with world.db.session() as s:
        pkg = models.Package(
            name="web",
            version="2",
            sha256="ab" * 32,
            size=3,
            manifest={"name": "web", "version": "2", "entrypoint": "app"},
        )
        mod = models.Module(system_id=world.system_id, name="web", package_name="web")
        s.add_all([pkg, mod])
        s.commit()
        node = s.get(models.Node, world.node_id)
        assert node is not None
        first = await world.orch.deploy(s, mod, node)
        second = await world.orch.deploy(s, mod, node)
        assert (first.name, second.name, first.state) == ("web-1", "web-2", "deploying")
        package_id = pkg.id
    await until(lambda: len(agent.sent) == 2, "two deploys")
    spec = agent.sent[0]["spec"]
    assert spec["package"]["url"] == f"/api/v1/packages/{package_id}/download"


async def test_a_refused_verb_lets_go_of_the_instance_row_before_its_session_closes(world):
    """A request's session closes in a worker thread the event loop schedules; a hello batch
    waiting on the loop for a row the refused request locked would wait for ever."""
    offline = world.add_instance("web-1", "stopped")
    with world.db.session() as s:
        inst = s.get(models.Instance, offline)
        assert inst is not None
        with pytest.raises(GdosError, match="is offline"):
            await world.orch.start(s, inst)
        # The session is still open, as a route's is until its teardown: the row is free.
        lock_from_elsewhere(world, offline)


async def test_a_destroy_already_under_way_lets_go_of_the_instance_row_too(world):
    """The same for a verb that succeeds without changing anything."""
    FakeAgent(world.agents, world.node_id)
    going = world.add_instance("web-1", "destroying")
    with world.db.session() as s:
        inst = s.get(models.Instance, going)
        assert inst is not None
        assert (await world.orch.destroy(s, inst)).state == "destroying"
        lock_from_elsewhere(world, going)


def lock_from_elsewhere(world: World, instance_id: str) -> None:
    """Lock the instance's row from another connection; fails (lock timeout) while it is held."""
    with world.db.engine.connect() as other:
        if world.db.is_postgres:
            other.exec_driver_sql("SET lock_timeout = '5s'")
        other.execute(
            select(models.Instance.id).where(models.Instance.id == instance_id).with_for_update()
        ).one()
        other.rollback()
