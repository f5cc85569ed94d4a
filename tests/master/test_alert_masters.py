"""Alert engines of several masters over one real database: one open alert per rule and target
whoever opens it, a node's open alerts taken over by the master that comes to hold it (or to
lead), and webhooks a dead master left unsent sent once by another."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.agents import AgentLink, AgentRegistry
from master.services.alerting import rules
from master.services.alerting.engine import STARTUP_GRACE, AlertEngine
from master.services.alerting.webhooks import Notifier
from master.services.directory import Directory
from tests.master.test_alert_engine import _Channel
from tests.master.test_webhooks import Receiver


class ToggledLease:
    """The leader lease, toggled by the test."""

    def __init__(self, held: bool) -> None:
        self.on = held

    def held(self) -> bool:
        return self.on


class Peer:
    """One master's alert engine and what feeds it, over the shared database."""

    def __init__(self, db: Database, master_id: str, leader: bool = False) -> None:
        self.db = db
        self.hub = Hub()
        self.directory = Directory(self.hub)
        self.agents = AgentRegistry()
        self.agents.master_id = master_id
        self.notifier = Notifier(base_delay=0.05)
        self.lease = ToggledLease(leader)
        self.engine = AlertEngine(
            db, self.hub, self.directory, self.agents, self.notifier, master_id, self.lease
        )
        with db.session() as s:
            self.engine.load(s)
        self.events: list[dict] = []
        self.hub.listen("alert", self.events.append)

    def hold(self, node_id: str) -> None:
        """The node's agent says hello here."""
        self.agents.attach(AgentLink(node_id, _Channel()))
        self.hub.publish("node", {"id": node_id, "status": "online", "master_id": "x"})

    def lose(self, node_id: str) -> None:
        link = self.agents.get(node_id)
        assert link is not None
        self.agents.detach(link)
        self.hub.publish("node", {"id": node_id, "status": "offline"})

    def instance(self, iid: str, state: str, node_id: str = "n1") -> None:
        data = {"id": iid, "node_id": node_id, "system_id": "s1", "name": iid, "state": state}
        self.hub.publish("instance", data)

    def rss(self, iid: str, value: float) -> None:
        self.engine.observe_samples("n1", time.time(), 1.0, [(iid, 1.0, value, 0, 0, 1)])

    def tick(self, later: float = 0.0) -> None:
        self.engine._next_sync = 0.0  # read the database at this tick
        self.engine.tick(time.time() + later)

    def states(self) -> list[tuple[str, str]]:
        return [(e["target"], e["state"]) for e in self.events]


def add_rule(db: Database, **body) -> str:
    values = rules.normalize({"name": "rule", **body})
    with db.session() as s:
        row = models.AlertRule(**values)
        s.add(row)
        s.commit()
        return row.id


def add_node(db: Database, node_id: str, master_id: str | None) -> None:
    with db.session() as s:
        s.add(models.Node(id=node_id, secret_hash=node_id * 8, hostname="host-" + node_id))
        s.flush()
        s.get_one(models.Node, node_id).master_id = master_id
        s.commit()


def alert_rows(db: Database) -> list[models.Alert]:
    with db.session() as s:
        return list(s.scalars(select(models.Alert).order_by(models.Alert.started_at)))


def outbox_rows(db: Database) -> list[models.AlertOutboxRow]:
    with db.session() as s:
        return list(s.scalars(select(models.AlertOutboxRow)))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    d = Database(db_url)
    d.migrate()
    yield d
    d.dispose()


@pytest.fixture
def pg(db: Database) -> Database:
    if db.is_sqlite:
        pytest.skip("one master on SQLite: no other engine shares its database")
    return db


def test_two_engines_opening_the_same_alert_make_one_row_and_one_webhook(db: Database) -> None:
    rule_id = add_rule(db, metric="state", op="==", threshold="exited", webhook_url="http://h/x")
    a, b = Peer(db, "master-a", leader=True), Peer(db, "master-b")
    for peer in (a, b):  # both believe they hold the node (a handover caught half way)
        with db.session() as s:
            peer.engine.set_rule(s.get_one(models.AlertRule, rule_id))
        peer.hold("n1")
        peer.instance("i1", "running")
        peer.instance("i1", "exited")
        peer.tick()
    [row] = alert_rows(db)
    assert row.state == "firing" and row.target_id == "i1"
    assert a.states() == [("instance/i1", "firing")] and b.events == []
    assert a.notifier.queue.qsize() == 1 and b.notifier.queue.qsize() == 0
    assert [o.alert_id for o in outbox_rows(db)] == [row.id]
    assert set(b.engine.open) == {row.id}  # B follows A's alert

    # B resolves it (one UPDATE of the open row); A, resolving late, changes nothing.
    for peer in (b, a):
        peer.instance("i1", "running")
        peer.tick(later=6)
    [row] = alert_rows(db)
    assert row.state == "resolved"
    assert b.states() == [("instance/i1", "resolved")]
    assert a.states() == [("instance/i1", "firing")]


def test_a_master_taking_over_a_node_continues_its_alert_and_resolves_it(pg: Database) -> None:
    add_rule(pg, metric="rss_bytes", op=">", threshold=1000, resolve_for_seconds=0)
    a = Peer(pg, "master-a", leader=True)
    a.hold("n1")
    a.instance("i1", "running")
    a.rss("i1", 5000)
    a.tick()
    [first] = alert_rows(pg)
    assert a.states() == [("instance/i1", "firing")]

    # A dies; the agent says hello to B, whose first sample is low: A's alert resolves.
    b = Peer(pg, "master-b")
    b.instance("i1", "running")
    b.hold("n1")
    b.rss("i1", 10)
    b.tick()
    [row] = alert_rows(pg)
    assert row.id == first.id and row.state == "resolved" and row.resolved_value == 10
    assert b.states() == [("instance/i1", "resolved")]

    # High again on B, then C takes the node while it is high: still one alert open.
    b.rss("i1", 6000)
    b.tick()
    c = Peer(pg, "master-c")
    c.instance("i1", "running")
    c.hold("n1")
    c.rss("i1", 7000)
    c.tick()
    assert [row.state for row in alert_rows(pg)] == ["resolved", "firing"] and c.events == []


def test_a_node_another_master_holds_is_not_offline_to_the_leader(pg: Database) -> None:
    add_node(pg, "n1", "master-a")
    b = Peer(pg, "master-b", leader=True)
    b.agents.peers = frozenset({"master-a"})
    b.engine._started -= STARTUP_GRACE
    for later in (0, 10, 20):
        b.tick(later)
    assert b.events == [] and alert_rows(pg) == []

    # A is gone (no heartbeat) and nobody took the node: lost, once the handover grace is past.
    b.agents.peers = frozenset()
    for later in (0, 10, 20):
        b.tick(later)
    assert b.states() == [("node/n1", "firing")]
    assert [row.rule_id for row in alert_rows(pg)] == ["node-offline"]


def test_a_new_leader_continues_the_node_offline_alert_and_resolves_it(pg: Database) -> None:
    add_node(pg, "n1", None)
    a = Peer(pg, "master-a", leader=True)
    a.hold("n1")
    a.lose("n1")  # a lost node: the leader judges it at once, as one master does
    a.tick()
    [first] = alert_rows(pg)
    assert a.states() == [("node/n1", "firing")]

    # A dies; B leads now: it takes the open alert, fires nothing new.
    b = Peer(pg, "master-b")
    b.engine._started -= STARTUP_GRACE
    b.lease.on = True
    for later in (0, 10, 20):
        b.tick(later)
    assert b.events == [] and [row.id for row in alert_rows(pg)] == [first.id]

    # The node comes back, to B: the same alert resolves, once.
    b.hold("n1")
    b.tick(later=30)
    [row] = alert_rows(pg)
    assert row.id == first.id and row.state == "resolved"
    assert b.states() == [("node/n1", "resolved")]


def test_a_rule_changed_on_one_master_applies_on_the_other(pg: Database) -> None:
    rule_id = add_rule(pg, metric="rss_bytes", op=">", threshold=1000, resolve_for_seconds=0)
    b = Peer(pg, "master-b", leader=True)
    b.hold("n1")
    b.instance("i1", "running")
    b.rss("i1", 5000)
    b.tick()
    assert b.states() == [("instance/i1", "firing")]
    with pg.session() as s:  # master A's API disables it
        row = s.get_one(models.AlertRule, rule_id)
        row.enabled, row.updated_at = False, row.updated_at + 1
        s.commit()
    b.tick()
    assert b.states() == [("instance/i1", "firing"), ("instance/i1", "resolved")]


async def test_a_webhook_a_dead_master_left_is_sent_once_by_another(db: Database) -> None:
    receiver = Receiver([])
    rule_id = add_rule(db, metric="state", op="==", threshold="failed", webhook_url=receiver.url)
    a = Peer(db, "master-a", leader=True)  # its notifier never runs: it dies first
    with db.session() as s:
        a.engine.set_rule(s.get_one(models.AlertRule, rule_id))
    a.hold("n1")
    a.instance("i1", "failed")
    a.tick()
    [left] = outbox_rows(db)
    assert left.claimed_by == "master-a"

    # Another master (on SQLite: the same one restarted) sends it, once, with the row's id.
    b = Peer(db, "master-b" if db.is_postgres else "master-a", leader=True)
    await b.notifier.start()
    try:
        await b.engine.start()
        await b.notifier.drain()
        b.engine.webhooks.resend()  # a later scan finds nothing left
        await b.notifier.drain()
    finally:
        await b.engine.stop()
        await b.notifier.stop()
        receiver.close()
    assert [h["x-gdos-delivery"] for h, _ in receiver.requests] == [left.id]
    assert receiver.requests[0][1]["event"] == "firing"
    assert outbox_rows(db) == []


def test_a_live_masters_webhooks_are_not_taken(pg: Database) -> None:
    add_rule(pg, metric="state", op="==", threshold="failed", webhook_url="http://h/x")
    a = Peer(pg, "master-a")
    a.tick()  # reads the rule
    with pg.session() as s:
        now = pg.now()
        s.add(models.Master(id="master-a", status="online", started_at=now, last_seen=now))
        s.commit()
    a.hold("n1")
    a.instance("i1", "failed")
    a.tick()
    assert len(outbox_rows(pg)) == 1
    b = Peer(pg, "master-b", leader=True)
    assert b.engine.webhooks.claim() == []


def test_a_goodbye_to_the_leader_is_not_a_lost_node(pg: Database) -> None:
    add_node(pg, "n1", None)
    a = Peer(pg, "master-a", leader=True)
    a.engine._started -= STARTUP_GRACE
    a.hold("n1")
    link = a.agents.get("n1")
    assert link is not None
    a.agents.detach(link)
    a.hub.publish("node", {"id": "n1", "status": "offline", "planned": True})
    for later in (0, 10, 20):
        a.tick(later)
    assert a.events == [] and alert_rows(pg) == []


def test_a_burst_of_transitions_is_stored_in_one_go(db: Database) -> None:
    rule_id = add_rule(db, metric="state", op="==", threshold="failed", webhook_url="http://h/x")
    a = Peer(db, "master-a", leader=True)
    with db.session() as s:
        a.engine.set_rule(s.get_one(models.AlertRule, rule_id))
    a.hold("n1")
    for i in range(3):
        a.instance(f"i{i}", "failed")
    a.tick()
    assert sorted(row.target_id for row in alert_rows(db) if row.state == "firing") == [
        "i0",
        "i1",
        "i2",
    ]
    assert len(outbox_rows(db)) == 3 and a.notifier.queue.qsize() == 3
    for i in range(3):
        a.instance(f"i{i}", "running")
    a.tick(later=6)
    assert [row.state for row in alert_rows(db)] == ["resolved"] * 3
    assert len(outbox_rows(db)) == 6
    assert [state for _, state in a.states()] == ["firing"] * 3 + ["resolved"] * 3


def test_the_leader_resolves_the_alerts_of_a_deleted_rule_nobody_evaluates(pg: Database) -> None:
    rule_id = add_rule(pg, metric="rss_bytes", op=">", threshold=1000)
    a = Peer(pg, "master-a")
    a.tick()
    a.hold("n1")
    a.instance("i1", "running")
    a.rss("i1", 5000)
    a.tick()
    [row] = alert_rows(pg)
    # A dies with the node; the rule is deleted on another master.
    with pg.session() as s:
        s.delete(s.get_one(models.AlertRule, rule_id))
        s.commit()
    b = Peer(pg, "master-b", leader=True)
    b.tick()
    [row] = alert_rows(pg)
    assert row.state == "resolved" and b.states() == [("instance/i1", "resolved")]
