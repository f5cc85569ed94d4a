"""The event stream on its own thread: batched frames, live figures shared, one wake per burst."""

from __future__ import annotations

import asyncio
import json
import threading

import websockets

from console.client import Client
from console.services.session import Session
from console.services.stream import MANY, Inbox, LiveFigures
from tests.console.conftest import until


def sample(key: str, cpu: float) -> dict:
    return {"id": key, "kind": "instance", "ts": "2026-11-28T10:00:00Z", "cpu_percent": cpu}


def test_live_figures_name_the_changed_targets_until_there_are_many():
    live = LiveFigures()
    live.put("a", sample("a", 1.0))
    live.put("a", sample("a", 2.0))
    live.put("b", sample("b", 3.0))
    assert live.take() == {"a", "b"}
    assert live.samples["a"]["cpu_percent"] == 2.0  # the newest wins
    assert live.take() == set()
    for n in range(MANY + 10):
        live.put(f"i{n}", sample(f"i{n}", 1.0))
    assert live.take() is None  # many: "maybe everything changed"
    assert len(live.samples) == MANY + 12


def test_the_inbox_wakes_once_per_drain():
    wakes: list[int] = []
    inbox = Inbox(lambda: wakes.append(1))
    inbox.put("instance", {"id": "i1", "state": "running"})
    inbox.put("metrics", sample("i1", 5.0))
    inbox.put("alert", {"id": "a1"})
    inbox.put("metrics", {"no": "id"})  # not a target: dropped
    assert wakes == [1]
    events, live = inbox.take()
    assert [t for t, _ in events] == ["instance", "alert"] and live
    inbox.put("node", {"id": "n1"})
    assert wakes == [1, 1]


async def test_a_session_takes_batched_frames_from_its_stream_thread():
    got: list[str] = []

    async def handler(ws):
        got.append(await ws.recv())  # {"batch": true}
        got.append(await ws.recv())  # the subscriptions
        frame = [
            {"topic": "metrics", "data": sample("i1", 1.0)},
            {"topic": "metrics", "data": sample("i1", 7.5)},
            {"topic": "instance", "data": {"id": "i1", "state": "running"}},
            {"topic": "metrics", "data": sample("i2", 3.0)},
        ]
        await ws.send(json.dumps(frame))
        await ws.send(json.dumps({"topic": "alert", "data": {"id": "a1", "state": "firing"}}))
        await ws.send("not json")  # ignored, the stream goes on
        await ws.send(json.dumps([{"topic": "node"}, {"topic": "node", "data": {"id": "n1"}}]))
        await ws.wait_closed()

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        session = Session(drain_ms=5)
        events: list[tuple[str, dict]] = []
        figures: list[set[str] | None] = []
        resynced: list[int] = []
        for topic in ("instance", "alert", "node"):
            session.on(topic, lambda data, t=topic: events.append((t, data)))
        session.on_metrics(lambda samples, changed: figures.append(changed))
        session.resynced.connect(lambda: resynced.append(1))
        session.start_stream(Client(f"http://127.0.0.1:{port}", token="t"))
        assert session.stream is not None
        await session.subscribe(["metrics:i1", "metrics:i2"])
        try:
            await until(lambda: len(events) >= 3, what="the events on the GUI thread")
            await until(lambda: session.live.samples.get("i2"), what="the figures")
            assert [t for t, _ in events] == ["instance", "alert", "node"]
            assert session.live.samples["i1"]["cpu_percent"] == 7.5
            assert figures and set().union(*(f or set() for f in figures)) == {"i1", "i2"}
            assert resynced == [1] and session.reachable
            assert json.loads(got[0]) == {"batch": True}
            assert json.loads(got[1]) == {"subscribe": ["metrics:i1", "metrics:i2"]}
            # Events reached the handlers on the GUI thread, not the stream thread.
            thread = session.stream._thread
            assert thread.is_alive() and thread is not threading.current_thread()
        finally:
            await session.logout(quiet=True)
        assert session.stream is None and session.live.samples == {}


def test_the_stream_thread_runs_a_plain_loop_under_the_apps_qasync_policy():
    """The app runs under `qasync.run`, whose policy makes every new loop a Qt one (bound to
    the GUI thread); the stream thread must not get one of those."""
    import qasync

    from console.services.stream import StreamThread
    from tests.console.conftest import _app

    _app()
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(qasync.DefaultQEventLoopPolicy())
    try:
        stream = StreamThread(Client("http://127.0.0.1:9", token="t"), Inbox(lambda: None))
        stream.start()
        assert stream.loop is not None and not isinstance(stream.loop, qasync.QEventLoop)
        loop = asyncio.DefaultEventLoopPolicy().new_event_loop()  # not the qasync one
        try:
            loop.run_until_complete(stream.stop())
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(old)
