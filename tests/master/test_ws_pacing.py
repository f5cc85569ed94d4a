"""The master's WebSocket protocol (master/server.py `paced_websocket_protocol`): a socket whose
app keeps up is never paused; one whose app stops reading is paused once a few messages wait;
every message arrives, in order. A real uvicorn server on a socket and a real client."""

import asyncio
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from master.server import QUEUE_HIGH, paced_websocket_protocol
from tests.support import free_port


class EchoCount:
    """Takes messages only once `reading` is set; answers `done` after `expect` of them."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.reading = asyncio.Event()
        self.got: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            await self.reading.wait()
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            self.got.append(message["text"])
            if len(self.got) == self.expect:
                await send({"type": "websocket.send", "text": "done"})


async def test_reads_pause_only_when_messages_pile_up_and_nothing_is_lost():
    app = EchoCount(expect=300)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=paced_websocket_protocol(), lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
            while not server.server_state.connections:
                await asyncio.sleep(0.01)
            proto = next(iter(server.server_state.connections))
            pauses = 0
            real_pause = proto.transport.pause_reading

            def counting_pause() -> None:
                nonlocal pauses
                pauses += 1
                real_pause()

            proto.transport.pause_reading = counting_pause
            # The app reads along: a hundred messages, one at a time, and no pause.
            app.reading.set()
            for n in range(100):
                await ws.send(str(n))
                await asyncio.sleep(0.001)
            for _ in range(500):
                if len(app.got) == 100:
                    break
                await asyncio.sleep(0.01)
            assert len(app.got) == 100
            assert pauses == 0
            # The app stops reading: bursts of 20 pile up to the high-water mark, then wait
            # in the socket instead of in memory.
            app.reading.clear()
            await asyncio.sleep(0.05)
            for burst in range(10):
                for n in range(20):
                    await ws.send(str(100 + burst * 20 + n))
                await asyncio.sleep(0.05)
            assert pauses >= 1 and proto.read_paused
            assert proto.queue.qsize() < QUEUE_HIGH + 20 + 2
            app.reading.set()
            assert await asyncio.wait_for(ws.recv(), 30) == "done"
            assert app.got == [str(n) for n in range(300)]
    finally:
        server.should_exit = True
        await serving
