"""Broadcast events shared between two masters' hubs on a real PostgreSQL server: an event
published on one reaches the other's subscribers and listeners once, in order, and is never
sent back; after the other's listener lost its connection, the events of the gap arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from master.db.session import Database
from master.hub import Hub
from master.services import bus as bus_module
from master.services.agents import AgentRegistry
from master.services.bus import Bus
from master.services.cluster_events import ClusterEvents
from tests.master.fake_agent import until


class Peer:
    def __init__(self, db: Database, master_id: str) -> None:
        agents = AgentRegistry()
        agents.master_id = master_id
        self.hub = Hub()
        self.sub = self.hub.subscribe()
        self.heard: list[dict[str, Any]] = []
        self.hub.listen("instance", self.heard.append)
        self.bus = Bus(db.url, db.engine)
        self.events = ClusterEvents(db, self.hub, self.bus, agents)
        self.events.attach()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.start()
        self.task = asyncio.create_task(self.events.run())

    def seen(self) -> list[dict[str, Any]]:
        out = []
        while not self.sub.queue.empty():
            out.append(json.loads(self.sub.queue.get_nowait()))
        return out

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.bus.stop()


@pytest.fixture
async def pair(tmp_path: Path, pg_module_db: str) -> AsyncIterator[tuple[Peer, Peer]]:
    from tests.pg import reset

    reset(pg_module_db)
    db = Database(pg_module_db)
    a, b = Peer(db, "master-a"), Peer(db, "master-b")
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()
    db.dispose()


async def test_an_event_published_on_one_master_reaches_the_other_once_in_order(
    pair: tuple[Peer, Peer],
) -> None:
    a, b = pair
    for n in range(5):
        a.hub.publish("instance", {"id": "i1", "n": n})
    a.hub.publish("metrics:n1", {"cpu": 1}, key="metrics:n1")  # keyed: not shared
    b.hub.publish("node", {"id": "n1", "status": "online"})
    got: list[dict[str, Any]] = []
    await until(lambda: len(got.__iadd__(b.seen())) >= 6, "A's events on B")
    await asyncio.sleep(0.5)  # anything more would have come
    got += b.seen()
    assert got[0] == {"topic": "node", "data": {"id": "n1", "status": "online"}}  # B's own
    assert [(e["topic"], e["data"]["n"]) for e in got[1:]] == [("instance", n) for n in range(5)]
    assert [e["n"] for e in b.heard] == [0, 1, 2, 3, 4]  # B's listeners too
    on_a = a.seen()  # A: its own events once, and B's node event, never its own back
    assert [e["topic"] for e in on_a] == ["instance"] * 5 + ["node"]


async def test_after_a_lost_listener_the_events_of_the_gap_arrive(
    pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch, pg_module_db: str
) -> None:
    a, b = pair
    monkeypatch.setattr(bus_module, "BACKOFF_MIN", 1.5)  # a gap long enough to publish in
    db = Database(pg_module_db)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": b.bus.backend_pid})
        await until(lambda: not b.bus.connected.is_set(), "B's listener gone")
        for n in range(3):
            a.hub.publish("instance", {"id": "i1", "n": n})
        await until(lambda: b.bus.connected.is_set(), "B listening again")
        got: list[dict[str, Any]] = []
        await until(lambda: len(got.__iadd__(b.seen())) >= 3, "the gap's events on B")
        await asyncio.sleep(0.5)
        got += b.seen()
        assert [e["data"]["n"] for e in got] == [0, 1, 2]
        assert b.bus.reconnects == 1
    finally:
        db.dispose()


async def test_old_events_are_pruned(pair: tuple[Peer, Peer], pg_module_db: str) -> None:
    a, _b = pair
    db = Database(pg_module_db)
    try:
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cluster_events (origin, topic, data, at) VALUES "
                    "('master-a', 'node', '{}', 0), ('master-gone', 'node', '{}', 0), "
                    "('master-a', 'node', '{}', extract(epoch from clock_timestamp()))"
                )
            )
        a.events.prune()
        with db.engine.connect() as conn:
            left = conn.execute(text("SELECT origin, at > 0 FROM cluster_events")).all()
        assert [tuple(row) for row in left] == [("master-a", True)]
    finally:
        db.dispose()


async def test_a_burst_of_events_is_one_row_and_arrives_whole_and_in_order(
    pair: tuple[Peer, Peer], pg_module_db: str
) -> None:
    """A hello publishes its node and every instance at once: one row, not one per event; a
    row of one event (as older masters wrote them) is read too."""
    a, b = pair
    a.hub.publish("node", {"id": "n1", "status": "online"})
    for n in range(20):
        a.hub.publish("instance", {"id": f"i{n}", "n": n})
    await a.events.written(timeout=10)
    db = Database(pg_module_db)
    try:
        with db.engine.begin() as conn:
            rows = conn.execute(text("SELECT count(*) FROM cluster_events")).scalar()
            conn.execute(
                text(
                    "INSERT INTO cluster_events (origin, topic, data, at) VALUES "
                    "('master-a', 'alert', '{\"id\": \"old\"}', 0)"
                )
            )
            conn.execute(text("SELECT pg_notify('gdos_events', 'master-a')"))
    finally:
        db.dispose()
    assert rows == 1
    got: list[dict[str, Any]] = []
    await until(lambda: len(got.__iadd__(b.seen())) >= 22, "A's events on B")
    await asyncio.sleep(0.5)
    got += b.seen()
    assert got[0] == {"topic": "node", "data": {"id": "n1", "status": "online"}}
    assert [e["data"]["n"] for e in got[1:21]] == list(range(20))
    assert got[21:] == [{"topic": "alert", "data": {"id": "old"}}]
    assert [e["n"] for e in b.heard] == list(range(20))


async def test_written_waits_for_the_events_before_it_not_for_a_flow_that_goes_on(
    pair: tuple[Peer, Peer], pg_module_db: str
) -> None:
    """A routed command waits for the events published before it to be committed; under a
    steady flow of events (a fleet's) it must not wait for the flow to pause."""
    a, _b = pair
    flowing = True

    async def flow() -> None:
        n = 0
        while flowing and n < 20_000:  # stops by itself at worst (about 20-40 s)
            a.hub.publish("instance", {"id": "flow", "n": n})
            n += 1
            await asyncio.sleep(0.001)

    publisher = asyncio.create_task(flow())
    await asyncio.sleep(0.2)
    a.hub.publish("alert", {"id": "before-the-command"})
    await a.events.written(timeout=60)
    still_flowing = not publisher.done()
    db = Database(pg_module_db)
    try:
        with db.engine.connect() as conn:
            data = [row[0] for row in conn.execute(text("SELECT data FROM cluster_events"))]
    finally:
        db.dispose()
    flowing = False
    await publisher
    assert any("before-the-command" in d for d in data)  # committed before written() returned
    assert still_flowing  # and it returned while events kept coming


async def test_a_carried_statement_commits_with_the_events_before_it_and_its_failure_is_its_own(
    pair: tuple[Peer, Peer],
) -> None:
    a, b = pair
    for n in range(3):
        a.hub.publish("instance", {"id": "i1", "n": n})
    await a.events.carry("SELECT pg_notify('gdos_test', %(p)s)", {"p": "x"})
    assert a.events.committed.value == a.events.appended == 3  # committed with (or before) it
    a.hub.publish("instance", {"id": "i1", "n": 3})
    with pytest.raises(ProgrammingError):  # its caller hears, at once
        await a.events.carry("SELECT * FROM no_such_table", {})
    a.hub.publish("instance", {"id": "i1", "n": 4})
    await until(lambda: len(b.heard) == 5, "A's events on B, the failed write's retried")
    assert [e["n"] for e in b.heard] == [0, 1, 2, 3, 4]
