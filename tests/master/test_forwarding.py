"""Forwarding keyed topics between masters, in parts: where keys are placed, what a peer's
subscription gets from the hub, who may open a peer stream (SQLite and PostgreSQL), and an
upstream against a real WebSocket server standing in for the peer (subscribes to exactly the
wanted keys, relays only those, closes when idle)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import WebSocketDenialResponse
from websockets.asyncio.server import ServerConnection, serve

from master.db import models
from master.hub import Hub
from master.services import forwarding
from master.services.forwarding import Forwarder, Upstream, event_key, place, subject, ws_url
from master.services.peer_secret import PEER_HEADER, SECRET_HEADER, PeerSecret
from tests.master.fake_agent import FakeAgent, World
from tests.master.inprocess import make_app, running, services_of
from tests.pg import reset
from tests.support import free_port, wait_for

HOLDERS = {
    "n1": ("n1", "B"),  # a node another master holds
    "i1": ("n1", "B"),  # an instance on it
    "i2": ("n2", "C"),
    "i3": ("n3", "A"),  # held here
    "i4": ("n4", None),  # offline
}
PEERS = {"B": "http://b:8080", "C": "http://c:8080"}


def test_keys_are_placed_on_the_peer_holding_their_node() -> None:
    keys = [
        "metrics:n1",
        "metrics:i1",
        "log:i1:stdout",
        "log:i2:App Log",
        "metrics:i3",
        "log:i4:stderr",
        "metrics:gone",
        "log:broken",
    ]
    assert place(keys, HOLDERS, PEERS) == {
        "B": {"metrics:n1", "metrics:i1", "log:i1:stdout"},
        "C": {"log:i2:App Log"},
    }
    assert place(keys, HOLDERS, {"C": "http://c:8080"}) == {"C": {"log:i2:App Log"}}
    assert place([], HOLDERS, PEERS) == {}


def test_keys_subjects_and_urls() -> None:
    assert subject("metrics:n1") == "n1" and subject("log:i1:App Log") == "i1"
    assert subject("metrics:") is None and subject("log:i1") is None and subject("x") is None
    sample = {"topic": "metrics", "data": {"id": "n1", "kind": "node"}}
    chunk = {"topic": "log", "data": {"instance_id": "i1", "name": "App Log", "data": "eA=="}}
    assert event_key(sample) == "metrics:n1" and event_key(chunk) == "log:i1:App Log"
    assert event_key({"topic": "node", "data": {"id": "n1"}}) is None
    assert event_key({"topic": "metrics", "data": {"id": 3}}) is None and event_key([]) is None
    assert ws_url("http://b:8080/") == "ws://b:8080/api/v1/events"
    assert ws_url("https://b.example") == "wss://b.example/api/v1/events"


def test_a_peer_subscriber_gets_keyed_events_only_and_its_keys_are_not_forwarded() -> None:
    hub = Hub()
    console, peer = hub.subscribe(), hub.subscribe()
    peer.peer = True
    console.keys.add("metrics:n1")
    peer.keys.update({"metrics:n1", "metrics:n2"})
    hub.keys_changed()
    hub.publish("node", {"id": "n1"})
    hub.publish("metrics", {"id": "n2"}, key="metrics:n2")
    hub.offer_keyed("metrics:n1", '{"topic":"metrics","data":{"id":"n1"}}')
    got = {
        sub: [json.loads(sub.queue.get_nowait()) for _ in range(sub.queue.qsize())]
        for sub in (console, peer)
    }
    assert [e["topic"] for e in got[console]] == ["node", "metrics"]
    assert [e["data"]["id"] for e in got[peer]] == ["n2", "n1"]
    assert hub.console_keys() == {"metrics:n1"}
    assert hub.wanted_keys() == {"metrics:n1", "metrics:n2"}


def test_a_peer_is_let_in_only_with_the_cluster_secret(tmp_path: Path, db_url: str) -> None:
    app = make_app(tmp_path, db_url=db_url)
    with running(app) as (client, auth):
        svc = services_of(app)
        secret = svc.peer_secret.value()
        assert (secret is None) == db_url.startswith("sqlite")
        for presented in (None, "", "wrong", (secret or "") + "x"):
            headers = {PEER_HEADER: "m2"}
            if presented is not None:
                headers[SECRET_HEADER] = presented
            with (
                pytest.raises(WebSocketDenialResponse) as refused,
                client.websocket_connect("/api/v1/events", headers=headers),
            ):
                pass
            history = client.get("/api/v1/instances/i1/metrics", headers={**auth, **headers})
            for answer in (refused.value, history):
                assert answer.status_code == 401
                error = answer.json()["error"]
                assert error["code"] == "unauthenticated" and "secret" in error["message"]
        assert client.get("/api/v1/instances/i1/metrics", headers=auth).status_code == 404
        if secret is None:
            return  # SQLite: a master is alone, no peer is ever let in
        headers = {PEER_HEADER: "m2", SECRET_HEADER: secret}
        assert client.get("/api/v1/instances/i1/metrics", headers=headers).status_code == 404
        with client.websocket_connect("/api/v1/events", headers=headers) as ws:
            ws.send_text(json.dumps({"subscribe": ["metrics:n1"]}))
            wait_for(lambda: "metrics:n1" in svc.hub.wanted_keys(), 10, what="the peer's key")
            assert svc.hub.console_keys() == set()
            ws.close()


class FakePeer:
    """A WebSocket server in the peer's place: records what the upstream sends, sends events."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.headers: dict[str, str] = {}
        self.conn: ServerConnection | None = None
        self.closed = asyncio.Event()

    async def handler(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.headers = dict(conn.request.headers) if conn.request else {}
        async for frame in conn:
            self.received.append(json.loads(frame))
        self.closed.set()

    def subscribed(self) -> set[str]:
        keys: set[str] = set()
        for msg in self.received:
            keys |= set(msg.get("subscribe", []))
            keys -= set(msg.get("unsubscribe", []))
        return keys


async def until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_an_upstream_subscribes_to_what_is_wanted_relays_it_and_closes_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forwarding, "IDLE", 0.5)
    peer, hub, port = FakePeer(), Hub(), free_port()
    console = hub.subscribe()
    console.keys.update({"metrics:n1", "log:i1:stdout", "metrics:n9"})
    async with serve(peer.handler, "127.0.0.1", port):
        up = Upstream("B", f"http://127.0.0.1:{port}", hub, {PEER_HEADER: "A", SECRET_HEADER: "s"})
        try:
            up.want({"metrics:n1", "log:i1:stdout"})
            await until(lambda: peer.subscribed() == {"metrics:n1", "log:i1:stdout"})
            assert peer.received[0] == {"batch": True}
            assert peer.headers[PEER_HEADER] == "A" and peer.headers[SECRET_HEADER] == "s"
            assert peer.conn is not None
            events = [
                {"topic": "metrics", "data": {"id": "n1", "cpu_percent": 1.5}},
                {"topic": "node", "data": {"id": "n1"}},  # not a keyed topic: never relayed
                {"topic": "metrics", "data": {"id": "n9"}},  # not subscribed there: dropped
                {"topic": "log", "data": {"instance_id": "i1", "name": "stdout", "data": "eA=="}},
            ]
            await peer.conn.send(json.dumps(events))
            await until(lambda: console.queue.qsize() == 2)
            relayed = [json.loads(console.queue.get_nowait()) for _ in range(2)]
            assert relayed == [events[0], events[3]]

            up.want({"log:i1:stdout"})
            await until(lambda: peer.subscribed() == {"log:i1:stdout"})
            up.want(())
            await until(lambda: peer.subscribed() == set())
            await asyncio.wait_for(peer.closed.wait(), 10)  # idle: the upstream hung up
            await until(lambda: up.done)
        finally:
            await up.close()


def hold(world: World, master_id: str) -> None:
    with world.db.session() as s:
        node = s.get(models.Node, world.node_id)
        assert node is not None
        node.master_id = master_id
        s.commit()


async def test_a_forwarder_subscribes_where_the_node_is_and_follows_it(
    tmp_path: Path, pg_module_db: str
) -> None:
    reset(pg_module_db)
    world = World(tmp_path, pg_module_db)
    iid = world.add_instance("t-1", "running")
    peers = {"B": (FakePeer(), free_port()), "C": (FakePeer(), free_port())}
    with world.db.session() as s:
        for mid, (_, port) in peers.items():
            url = f"http://127.0.0.1:{port}"
            s.add(models.Master(id=mid, url=url, started_at=0, last_seen=0))
        s.commit()
    hold(world, "B")
    world.agents.master_id, world.agents.peers = "A", frozenset(peers)
    forwarder = Forwarder(world.db, world.hub, world.agents, PeerSecret(world.db))
    console = world.hub.subscribe()
    remote = {f"metrics:{world.node_id}", f"metrics:{iid}", f"log:{iid}:stdout"}
    b, c = peers["B"][0], peers["C"][0]
    try:
        async with (
            serve(b.handler, "127.0.0.1", peers["B"][1]),
            serve(c.handler, "127.0.0.1", peers["C"][1]),
        ):
            console.keys.update({*remote, "metrics:unknown"})
            world.hub.keys_changed()
            await until(lambda: b.subscribed() == remote)
            assert b.headers[SECRET_HEADER] == PeerSecret(world.db).value()
            assert b.headers[PEER_HEADER] == "A" and list(forwarder.upstreams) == ["B"]

            # The node moves to C: its keys move with it.
            hold(world, "C")
            world.hub.publish("node", {"id": world.node_id, "status": "online", "master_id": "C"})
            await until(lambda: b.subscribed() == set() and c.subscribed() == remote)

            # The node says hello here: its keys are served locally, the upstream lets them go.
            FakeAgent(world.agents, world.node_id)
            world.hub.publish("node", {"id": world.node_id, "status": "online", "master_id": "A"})
            await until(lambda: c.subscribed() == set())
    finally:
        await forwarder.close()
        world.db.dispose()
