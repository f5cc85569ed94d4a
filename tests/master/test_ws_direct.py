"""Text messages handed to an app's sink where they are parsed (master/ws_direct.py), through
the master's WebSocket protocol (master/server.py): every message once and in order, declined
ones through `receive`, binary frames never to the sink, and the WebSocket rules (size limit,
ping/pong, close codes) as without it. A real uvicorn server on a socket and a real client."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from master.server import LARGE_MESSAGE, paced_websocket_protocol
from master.ws_direct import direct_text
from tests.support import free_port


class SinkApp:
    """Attaches a sink that takes every text but those `decline` says no to; logs where each
    message arrived ("sink" or "receive"); after a declined one, awaits `resume` before it reads
    on (as the agent socket awaits a hello's reconciliation)."""

    def __init__(self, decline: Callable[[str], bool] = lambda text: False) -> None:
        self.decline = decline
        self.log: list[tuple[str, Any]] = []
        self.resume = asyncio.Event()
        self.disconnect: dict[str, Any] | None = None
        self.attached = False
        self.raise_on: str | None = None

    def sink(self, text: str) -> bool:
        if text == self.raise_on:
            raise ValueError("the sink failed")
        if self.decline(text):
            return False
        self.log.append(("sink", text))
        return True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        attach = direct_text(scope.get("extensions"))
        assert attach is not None, "the master's protocol offers the sink"
        attach(self.sink)
        self.attached = True
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnect = message
                return
            got = message.get("text", message.get("bytes"))
            self.log.append(("receive", got))
            if message.get("text") is not None and self.decline(message["text"]):
                await self.resume.wait()
                self.resume.clear()


@contextlib.asynccontextmanager
async def serving(app: SinkApp, **config: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ws=paced_websocket_protocol(),
            lifespan="off",
            log_level="warning",
            **config,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await task


async def until(check: Callable[[], bool], timeout: float = 20) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def open_ws(url: str, **kw: Any) -> ClientConnection:
    return await connect(url, proxy=None, compression=None, **kw)


async def test_text_goes_to_the_sink_in_order_and_never_through_receive():
    app = SinkApp()
    async with serving(app) as url:
        ws = await open_ws(url)
        await until(lambda: app.attached)
        sent = [f"m{n}" for n in range(200)]
        for n, text in enumerate(sent):
            await ws.send(text)
            if n % 50 == 0:
                await asyncio.sleep(0.01)  # some alone in a read, some several to a read
        await until(lambda: len(app.log) == len(sent))
        assert app.log == [("sink", text) for text in sent]
        await ws.close()
        await until(lambda: app.disconnect is not None)
        assert app.disconnect is not None and app.disconnect["code"] == 1000


async def test_a_declined_message_and_those_after_it_wait_for_the_app_in_order():
    app = SinkApp(decline=lambda text: text.startswith("hello"))
    async with serving(app) as url:
        ws = await open_ws(url)
        await until(lambda: app.attached)
        for text in ("a", "b", "hello1", "c", "d"):
            await ws.send(text)
        # "hello1" is the app's to handle; it is busy with it: "c" and "d" must wait.
        await until(lambda: len(app.log) == 3)
        await asyncio.sleep(0.2)
        assert app.log == [("sink", "a"), ("sink", "b"), ("receive", "hello1")]
        app.resume.set()
        await until(lambda: len(app.log) == 5)
        # Queued behind the declined one, they come through `receive`; once the queue is
        # empty again the sink has the next.
        assert app.log[3:] == [("receive", "c"), ("receive", "d")]
        await ws.send("e")
        await until(lambda: len(app.log) == 6)
        assert app.log[5] == ("sink", "e")
        await ws.close()


async def test_binary_frames_go_through_receive():
    app = SinkApp()
    async with serving(app) as url:
        ws = await open_ws(url)
        await until(lambda: app.attached)
        await ws.send("t1")
        await ws.send(b"\x00\x01")
        await until(lambda: len(app.log) == 2)
        await ws.send("t2")
        await until(lambda: len(app.log) == 3)
        assert app.log == [("sink", "t1"), ("receive", b"\x00\x01"), ("sink", "t2")]
        await ws.close()


async def test_a_large_message_taken_by_the_sink_does_not_stop_reading():
    """Reading pauses when a large message waits for the app; one the sink took waits for
    nothing, so reading goes on (else the app, waiting in `receive`, would wait forever)."""
    app = SinkApp()
    async with serving(app) as url:
        ws = await open_ws(url)
        await until(lambda: app.attached)
        big = "x" * (LARGE_MESSAGE + 1000)
        await ws.send(big)
        await until(lambda: len(app.log) == 1)
        await ws.send("after")  # in a read of its own
        await until(lambda: len(app.log) == 2, timeout=10)
        assert [text[:5] for _, text in app.log] == ["xxxxx", "after"]
        await ws.close()


async def test_size_limit_ping_and_close_codes_are_unchanged():
    app = SinkApp()
    async with serving(app, ws_max_size=1 << 16) as url:
        ws = await open_ws(url)
        await until(lambda: app.attached)
        pong = await ws.ping()
        await asyncio.wait_for(pong, 10)  # answered by the protocol, not the sink
        await ws.send("still here")
        await until(lambda: app.log == [("sink", "still here")])
        await ws.send("y" * ((1 << 16) + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await until(lambda: app.disconnect is not None)
        assert app.log == [("sink", "still here")]

        app.attached, app.disconnect = False, None
        ws = await open_ws(url)
        await until(lambda: app.attached)
        await ws.close(4001, "going")
        await until(lambda: app.disconnect is not None)
        assert app.disconnect is not None and app.disconnect["code"] == 4001


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_sink_that_raises_ends_the_connection_with_1011():
    app = SinkApp()
    app.raise_on = "boom"
    records = Records()
    logger = logging.getLogger("uvicorn.error")  # where uvicorn logs an app's exceptions
    async with serving(app) as url:
        logger.addHandler(records)
        try:
            ws = await open_ws(url)
            await until(lambda: app.attached)
            await ws.send("fine")
            await ws.send("boom")
            await ws.send("never")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        finally:
            logger.removeHandler(records)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        await until(lambda: app.disconnect is not None)
        assert app.log == [("sink", "fine")]
        assert any("direct receiver" in m for m in records.messages)
