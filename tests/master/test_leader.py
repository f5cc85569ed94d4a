"""The leader of several masters on a real PostgreSQL server (one master on SQLite always leads):
one lease holder at a time, the next when it goes; the leader's jobs on a dead master's nodes
and operations, fenced; login lock-outs shared through the database, by the in-memory rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services import upload_expiry
from master.services.agents import AgentRegistry
from master.services.leader import LeaderLease
from master.services.leader_jobs import LeaderJobs
from master.services.login_failures import SharedLoginThrottle
from master.services.masters import TABLE, Masters
from master.services.nodes import Nodes
from master.services.operation_steps import OpState, Step, StepState
from master.services.operation_store import OperationStore
from master.services.operations import Operations
from master.services.orchestrator import Orchestrator
from master.services.releases import Releases
from master.services.rollouts import Rollouts
from master.services.throttle import LoginThrottle
from master.services.uploads import UploadService
from master.storage import open_store
from protocol.messages import Hello, HostInfo, InstanceReport, Result
from protocol.states import InstanceState as S
from tests.e2e.test_s3_store import KEYS
from tests.master.fake_agent import FakeAgent, until
from tests.master.inprocess import make_app, running
from tests.master.test_operations import Fleet, obeys
from tests.pg import reset
from tests.support import ADMIN_PASSWORD


@pytest.fixture
def pg_url(pg_module_db: str) -> str:
    reset(pg_module_db)
    return pg_module_db


def registered(db: Database, tmp_path: Path, name: str) -> Masters:
    settings = Settings(data_dir=tmp_path / name, store_type="minio", public_url=f"http://{name}")
    masters = Masters(db, settings, AgentRegistry())
    masters.register()
    return masters


def dead(db: Database, masters: Masters) -> None:
    """The master's heartbeat stopped a minute ago (as a kill -9 leaves it)."""
    with db.engine.begin() as conn:
        conn.execute(
            update(TABLE).where(TABLE.c.id == masters.id).values(last_seen=TABLE.c.last_seen - 60)
        )


class Running:
    """Leases running as tasks, cancelled at the end."""

    def __init__(self) -> None:
        self.tasks: dict[LeaderLease, asyncio.Task[None]] = {}

    def start(self, db: Database, master_id: str) -> LeaderLease:
        lease = LeaderLease(db)
        lease.master_id = master_id
        self.tasks[lease] = asyncio.create_task(lease.run())
        return lease

    async def stop(self, lease: LeaderLease) -> None:
        task = self.tasks.pop(lease)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def leases() -> AsyncIterator[Running]:
    running = Running()
    yield running
    for lease in list(running.tasks):
        await running.stop(lease)


def leaders(masters: Masters) -> set[str]:
    return {m["id"] for m in masters.listing() if m["leader"]}


async def test_one_master_leads_and_another_takes_over_when_its_session_ends(
    pg_url: str, tmp_path: Path, leases: Running
) -> None:
    db = Database(pg_url)
    a, b = registered(db, tmp_path, "a"), registered(db, tmp_path, "b")
    changes: list[tuple[str, bool]] = []
    lease_a, lease_b = leases.start(db, a.id), leases.start(db, b.id)

    def tell(name: str) -> Callable[[bool], None]:
        return lambda leading: changes.append((name, leading))

    lease_a.on_change(tell("a"))
    lease_b.on_change(tell("b"))
    await until(lambda: lease_a.held() or lease_b.held(), "a leader", 30)
    await asyncio.sleep(1.5)  # three rounds of the other trying the lock
    assert not (lease_a.held() and lease_b.held())
    (first_id,) = leaders(a)
    assert leaders(b) == {first_id}
    first, second = (lease_a, lease_b) if first_id == a.id else (lease_b, lease_a)
    with db.engine.connect() as conn:
        assert a.gone_ids(conn) == set() and b.gone_ids(conn) == set()

    await leases.stop(first)  # its session ends: the lock is free at once
    await until(second.held, "the other master to lead", 30)
    assert not first.held()
    assert leaders(a) == {second.master_id}
    watcher = a if second.master_id == a.id else b
    with db.engine.connect() as conn:  # its session is gone: dead, although it beat lately
        assert watcher.gone_ids(conn) == {first_id}
    names = {a.id: "a", b.id: "b"}
    told = {name: [leading for n, leading in changes if n == name] for name in ("a", "b")}
    assert told == {names[first_id]: [True, False], names[second.master_id]: [True]}
    db.dispose()


async def test_a_master_on_sqlite_always_leads(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'master.db'}")
    lease = LeaderLease(db)
    seen: list[bool] = []
    lease.on_change(seen.append)
    assert lease.held()
    await asyncio.wait_for(lease.run(), 5)  # nothing to elect: returns at once
    assert seen == [True] and lease.held()
    db.dispose()


class Cluster(Fleet):
    """A fleet on PostgreSQL seen by master `me`, beside master `gone`, dead."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        super().__init__(tmp_path, db_url)
        self.me = registered(self.db, tmp_path, "me")
        self.gone = registered(self.db, tmp_path, "gone")
        self.agents.master_id = self.me.id
        self.ops.store.master_id = self.me.id
        self.nodes = Nodes(self.db, self.hub, self.agents, self.orch)
        rollouts = Rollouts(
            self.db, self.orch, self.agents, self.ops, Releases(self.db, self.orch, self.agents)
        )
        self.lease = LeaderLease(self.db)
        self.lease.master_id = self.me.id
        self.jobs = LeaderJobs(
            self.db, self.lease, self.me, self.nodes, self.ops, rollouts, grace=0
        )
        self.node_events: list[dict[str, Any]] = []
        self.hub.listen("node", self.node_events.append)

    def hold(self, node_id: str, master_id: str, epoch: int) -> None:
        with self.db.session() as s:
            node = s.get(models.Node, node_id)
            assert node is not None
            node.master_id, node.epoch = master_id, epoch
            s.commit()

    def node(self, node_id: str) -> tuple[str | None, int]:
        with self.db.session() as s:
            node = s.get(models.Node, node_id)
            assert node is not None
            return node.master_id, node.epoch


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, pg_url)
    task = asyncio.create_task(c.lease.run())
    await until(c.lease.held, "the lease", 30)
    yield c
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    c.db.dispose()


async def test_the_leader_marks_offline_the_nodes_of_a_dead_master_fenced_by_epoch(
    cluster: Cluster,
) -> None:
    c = cluster
    lost = c.add_instance("lost-1", S.RUNNING, "running")
    c.hold(c.node_id, c.gone.id, 3)
    with c.db.session() as s:
        moved = models.Node(secret_hash="n2", hostname="moved", master_id=c.gone.id, epoch=7)
        kept = models.Node(secret_hash="n3", hostname="kept", master_id=c.me.id, epoch=1)
        s.add_all([moved, kept])
        s.flush()
        s.add(models.Instance(system_id=c.system_id, node_id=kept.id, name="k-1", state=S.RUNNING))
        s.commit()
        moved_id, kept_id = moved.id, kept.id

    c.jobs.once()  # the other master still beats: nothing is its to judge
    assert c.node(c.node_id) == (c.gone.id, 3)

    dead(c.db, c.gone)
    c.jobs.lose_node(moved_id, 6, c.gone.id)  # read before its hello elsewhere: fenced
    assert c.node(moved_id) == (c.gone.id, 7)
    c.jobs.once()
    assert c.node(c.node_id) == (None, 4)  # the epoch goes up: a woken master's link is stale
    assert c.node(moved_id) == (None, 8)
    assert c.node(kept_id) == (c.me.id, 1)
    inst = c.instance(lost)
    assert inst is not None and inst.state == S.UNKNOWN
    await asyncio.sleep(0)  # node events go out at the end of the turn
    offline = {e["id"] for e in c.node_events if e["status"] == "offline"}
    assert offline == {c.node_id, moved_id}

    c.jobs.once()  # nothing left to do: no second event
    await asyncio.sleep(0)
    assert len([e for e in c.node_events if e["id"] == c.node_id]) == 1


async def test_a_dead_masters_node_that_says_hello_elsewhere_within_the_grace_stays_online(
    cluster: Cluster,
) -> None:
    c = cluster
    back = c.add_instance("back-1", S.RUNNING, "running")
    c.hold(c.node_id, c.gone.id, 3)
    c.jobs.grace = 3600
    dead(c.db, c.gone)
    c.jobs.once()  # dead, but its agents get the grace to move
    assert c.node(c.node_id) == (c.gone.id, 3)
    c.hold(c.node_id, c.me.id, 4)  # its hello here
    c.jobs.grace = 0
    c.jobs.once()
    assert c.node(c.node_id) == (c.me.id, 4)
    inst = c.instance(back)
    assert inst is not None and inst.state == S.RUNNING
    await asyncio.sleep(0)
    assert not [e for e in c.node_events if e["id"] == c.node_id]


def step(instance_id: str, name: str, node_id: str, level: int, state: StepState) -> Step:
    return Step(instance_id=instance_id, name=name, node_id=node_id, level=level, state=state)


async def test_the_leader_takes_over_a_dead_masters_batch_start_and_starts_no_step_twice(
    cluster: Cluster,
) -> None:
    c = cluster
    # What the dead master left: level 1 done (its process has exited since: not started
    # again), level 2 half begun: web's start went out and its agent reported it running in
    # its hello to this master; api's was never sent.
    db_ = c.add_module_instance("db", 1, S.EXITED)
    web = c.add_module_instance("web", 2, S.RUNNING)
    api = c.add_module_instance("api", 2, S.STOPPED)
    steps = [
        step(db_, "db", c.node_id, 1, StepState.DONE),
        step(web, "web", c.node_id, 2, StepState.STARTING),
        step(api, "api", c.node_id, 2, StepState.PENDING),
    ]
    theirs = OperationStore(c.db, c.hub)
    theirs.master_id = c.gone.id
    with c.db.session() as s:
        op_theirs = theirs.create(s, "start", c.system_id, "tester", steps, None)
    dead(c.db, c.gone)
    agent = c.agent(obeys)
    c.orch.reconciled.add(c.node_id)  # the node's hello to this master is applied

    c.jobs.once()
    op = c.ops.live.get(op_theirs.id)
    assert op is not None, "taken over"
    await until(lambda: op.state != OpState.RUNNING, "the operation to end")
    assert op.state == OpState.SUCCEEDED, op.error
    assert [(m["action"], m["instance_ids"]) for m in agent.sent] == [("start", [api])]
    row = c.row(op)
    assert row.master_id == c.me.id and row.state == "succeeded" and row.resumed == 1
    assert [st["state"] for st in row.steps] == ["done", "done", "done"]

    # Taken once: another leader's compare-and-set finds it gone, and the old driver, woken,
    # cannot write it and is told to let it go.
    assert c.ops.store.take_over(op.id, c.gone.id) is None
    assert c.ops.store.drives(op.id) and not theirs.drives(op.id)
    lost: list[str] = []
    theirs.on_lost.append(lost.append)
    op_theirs.state, op_theirs.error = OpState.FAILED, "late"
    theirs.save([op_theirs])
    assert lost == [op.id]
    assert c.row(op).state == "succeeded"


async def test_a_cleanly_stopped_masters_operation_is_taken_over_and_its_nodes_left_alone(
    cluster: Cluster,
) -> None:
    c = cluster
    web = c.add_module_instance("web", 1, S.RUNNING)
    c.hold(c.node_id, c.gone.id, 2)
    theirs = OperationStore(c.db, c.hub)
    theirs.master_id = c.gone.id
    with c.db.session() as s:
        steps = [step(web, "web", c.node_id, 1, StepState.STOPPING)]
        left = theirs.create(s, "stop", c.system_id, "tester", steps, None)
    c.gone.retire()  # a clean stop: offline at once, its nodes let go (their agents move)
    c.jobs.once()
    assert c.node(c.node_id) == (None, 2)  # not the leader's to mark: no epoch raised
    inst = c.instance(web)
    assert inst is not None and inst.state == S.RUNNING
    assert left.id in c.ops.live and c.row(left).master_id == c.me.id
    c.ops.let_go(left.id)  # its node never comes back here: not followed further


def started_here(c: Cluster) -> Callable[[dict[str, Any]], Result]:
    """An agent that starts what it is told to (a `start`, or a `batch` start) and reports it."""

    def answer(msg: dict[str, Any]) -> Result:
        ids = msg.get("instance_ids") or [msg["instance_id"]]
        c.orch.reports.queue(c.node_id, [InstanceReport(i, S.RUNNING, pid=7) for i in ids])
        return Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

    return answer


async def test_a_stopped_driver_that_wakes_after_a_take_over_lets_its_operation_go(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    db_ = c.add_module_instance("db", 1, S.STOPPED)
    # The dead master's own services, its operation waiting on a start never answered.
    agents = AgentRegistry()
    agents.master_id = c.gone.id
    hub = Hub()
    orch = Orchestrator(c.db, agents, hub, Settings(data_dir=tmp_path))
    theirs = Operations(c.db, orch, agents, hub)
    theirs.store.master_id = c.gone.id
    FakeAgent(agents, c.node_id, answer=lambda msg: None)
    with c.db.session() as s:
        system = s.get(models.System, c.system_id)
        assert system is not None
        stale = theirs.begin(s, system, "start", "tester")
    await until(lambda: stale.level == 1, "its first level begun")

    dead(c.db, c.gone)  # it stopped; the leader takes its operation over
    c.jobs.once()
    mine = c.ops.live[stale.id]
    # The agent, whose start never arrived, says hello here: its hello re-drives the start
    # (desired running, reported stopped), and the operation sends none of its own.
    here = FakeAgent(c.agents, c.node_id, answer=started_here(c))
    hello = Hello(
        agent_version="t", host=HostInfo(hostname="h"), instances=[InstanceReport(db_, S.STOPPED)]
    )
    await c.orch.on_hello(here.link, hello)
    await until(lambda: mine.state != OpState.RUNNING, "the operation to end here")
    assert mine.state == OpState.SUCCEEDED, mine.error
    assert [(m["type"], m.get("instance_id")) for m in here.sent] == [("start", db_)]

    theirs.store.touch(stale)  # it wakes and saves its progress: refused, it lets go
    await until(lambda: stale.id not in theirs.live, "the woken master to let go")
    assert stale.task is not None
    await asyncio.gather(stale.task, return_exceptions=True)
    assert stale.task.cancelled()
    row = c.row(mine)
    assert (row.master_id, row.state) == (c.me.id, "succeeded")
    assert c.instance(db_).state == S.RUNNING  # type: ignore[union-attr]
    await orch.close()


@pytest.fixture
def two_throttles(pg_url: str) -> Iterator[tuple[SharedLoginThrottle, SharedLoginThrottle]]:
    a, b = Database(pg_url), Database(pg_url)
    yield SharedLoginThrottle(a), SharedLoginThrottle(b)
    a.dispose()
    b.dispose()


def test_five_failed_logins_on_one_master_lock_the_source_out_on_another(
    two_throttles: tuple[SharedLoginThrottle, SharedLoginThrottle],
) -> None:
    on_a, on_b = two_throttles
    alone = LoginThrottle()
    now = 1_000_000.0
    for n in range(1, 9):
        now += 0.1
        for throttle in (on_a, alone):
            throttle.failed("10.0.0.9", now)
        wait_b, wait_alone = on_b.retry_after("10.0.0.9", now), alone.retry_after("10.0.0.9", now)
        assert wait_b == pytest.approx(wait_alone), n  # the same rule as one master's
        assert (wait_b > 0) == (n >= 5), n
    assert on_b.retry_after("10.0.0.8", now) == 0  # another source
    later = now + 1_000  # past the window: counted from one again
    for _ in range(4):
        on_b.failed("10.0.0.9", later)
    assert on_a.retry_after("10.0.0.9", later) == 0
    on_b.failed("10.0.0.9", later)
    assert on_a.retry_after("10.0.0.9", later) == pytest.approx(1.0)
    on_a.succeeded("10.0.0.9")  # a good login forgets the source everywhere
    assert on_b.retry_after("10.0.0.9", later) == 0


def test_a_source_locked_out_on_one_master_is_locked_out_on_another(
    pg_url: str, s3_server: str, tmp_path: Path
) -> None:
    store = {
        "db_url": pg_url,
        "store_type": "minio",
        "minio_endpoint": s3_server,
        "minio_ak": KEYS[0],
        "minio_sk": KEYS[1],
        "minio_bucket": "logins",
    }
    wrong = {"username": "admin", "password": "not the password"}
    right = {"username": "admin", "password": ADMIN_PASSWORD}
    a, b = make_app(tmp_path / "a", **store), make_app(tmp_path / "b", **store)
    with running(a) as (on_a, _), running(b) as (on_b, _):
        for _ in range(5):
            assert on_a.post("/api/v1/auth/login", json=wrong).status_code == 401
        # Locked out for 1 s now, 2 s after the next failure, 4 s after the one after: a
        # window wide enough for a loaded machine.
        for wait in (1.1, 2.1):
            time.sleep(wait)
            assert on_a.post("/api/v1/auth/login", json=wrong).status_code == 401
        refused = on_b.post("/api/v1/auth/login", json=right)  # even the right password
        assert refused.status_code == 429, refused.text
        assert "too many failed logins" in refused.json()["error"]["message"]


class Switch:
    """A lease the test holds or not."""

    def __init__(self) -> None:
        self.on = False

    def held(self) -> bool:
        return self.on


async def test_uploads_expire_only_on_the_master_holding_the_lease(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, upload_ttl=1.0)
    db = Database(f"sqlite:///{tmp_path / 'master.db'}")
    db.migrate()
    uploads = UploadService(db, await open_store(settings), settings)
    with db.session() as s:
        s.add(models.PackageUpload(id="abandoned", length=10, expires_at=time.time() - 60))
        s.commit()
    uploads.path("abandoned").write_bytes(b"12345")
    lease = Switch()
    task = asyncio.create_task(
        upload_expiry.expire_forever(uploads, lambda: upload_expiry.expire(uploads), lease)
    )
    try:
        await asyncio.sleep(0.5)  # passes go by: none while another master leads
        assert uploads.path("abandoned").exists()
        with db.session() as s:
            assert s.get(models.PackageUpload, "abandoned") is not None
        lease.on = True
        await until(lambda: not uploads.path("abandoned").exists(), "the expiry", 10)
        with db.session() as s:
            assert s.get(models.PackageUpload, "abandoned") is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        db.dispose()
