"""The event stream's writer: what a subscriber's queue becomes on its socket, and a slow reader
cut off. The socket is a recorder (the seam); the hub and its queues are the real ones."""

import asyncio
import json

from master.api.events import _write_events
from master.hub import Hub, Subscriber
from protocol.messages import CLOSE_TOO_SLOW


class Recorder:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.sent = asyncio.Event()

    async def send_text(self, data: str) -> None:
        self.frames.append(data)
        self.sent.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason or "")


async def test_events_go_out_one_by_one_or_as_one_batch_per_burst():
    hub = Hub()
    sub = hub.subscribe()
    ws = Recorder()
    writer = asyncio.create_task(_write_events(ws, sub))
    hub.publish("system", {"id": "s1"})
    await asyncio.wait_for(ws.sent.wait(), 10)
    assert [json.loads(f)["data"]["id"] for f in ws.frames] == ["s1"]
    sub.batch = True
    ws.sent.clear()
    for n in range(3):
        hub.publish("system", {"id": f"b{n}"})  # one turn of the loop: one burst
    await asyncio.wait_for(ws.sent.wait(), 10)
    assert [[e["data"]["id"] for e in json.loads(f)] for f in ws.frames[1:]] == [["b0", "b1", "b2"]]
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    assert ws.closed is None
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left waiting on the queue


async def test_a_reader_too_slow_for_its_queue_is_cut_off():
    hub = Hub()
    sub: Subscriber = hub.subscribe(maxsize=3)
    for n in range(5):  # more than the queue holds before the writer ran once
        hub.publish("system", {"id": f"s{n}"})
    assert sub.overflowed.is_set()
    ws = Recorder()
    await asyncio.wait_for(_write_events(ws, sub), 10)
    assert ws.closed == (CLOSE_TOO_SLOW, "event stream reader too slow") and ws.frames == []
