"""The agent's WebSocket client against a real server (the `websockets` library the master serves
with), over TLS too, and against raw sockets for what a well-behaved server never does."""

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve
from websockets.utils import accept_key

from agent.link import hung_master
from agent.wsclient import ConnectionClosed, InvalidStatus, WebSocketError, connect

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(handler: Handler, **kw: Any) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **kw) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        scheme = "wss" if kw.get("ssl") else "ws"
        yield f"{scheme}://127.0.0.1:{port}/api/v1/agent/ws?x=1"


@contextlib.asynccontextmanager
async def raw_server(
    respond: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await respond(reader, writer)

    srv = await asyncio.start_server(on_client, "127.0.0.1", 0)
    async with srv:
        yield f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"


async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the handshake correctly, as a server would, and nothing more."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
    )
    await writer.drain()


async def test_messages_both_ways_with_headers_path_and_sizes() -> None:
    seen: dict[str, Any] = {}

    async def echo(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["auth"] = ws.request.headers["Authorization"]
        seen["path"] = ws.request.path
        seen["extensions"] = ws.request.headers.get("Sec-WebSocket-Extensions")
        async for msg in ws:
            await ws.send(msg)

    big = "x" * 70_000 + "é"  # a 64-bit length, and UTF-8 across the masking
    async with server(echo, max_size=None) as url:
        ws = await connect(url, headers={"Authorization": "Bearer s3cret"}, max_size=1 << 20)
        async with ws:
            for msg in ("hello", "", big, "y" * 200):
                await ws.send(msg)
                assert await ws.recv() == msg
            await ws.send(b"\x00\xffbin")
            assert await ws.recv() == b"\x00\xffbin"
    assert seen == {"auth": "Bearer s3cret", "path": "/api/v1/agent/ws?x=1", "extensions": None}


async def test_fragmented_messages_and_server_pings() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["frag", "men", "ted"])  # three frames, one message
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)  # our client answered it
        await ws.send("after the ping")
        await ws.close(1000, "bye")

    async with server(handler) as url, await connect(url) as ws:
        got = [msg async for msg in ws]  # ends quietly on a normal close
    assert got == ["fragmented", "after the ping"]


async def test_an_abnormal_close_raises_with_its_code() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1011, "master shutting down badly")

    async with server(handler) as url, await connect(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            async for _ in ws:
                pass
    assert info.value.code == 1011 and "badly" in info.value.reason
    with pytest.raises(ConnectionClosed):
        await ws.send("too late")


async def test_a_refused_upgrade_gives_its_status() -> None:
    def refuse(conn: ServerConnection, request: Any) -> Any:
        return conn.respond(HTTPStatus.UNAUTHORIZED, "revoked\n")

    async with server(lambda ws: ws.wait_closed(), process_request=refuse) as url:
        with pytest.raises(InvalidStatus) as info:
            await connect(url)
    assert info.value.status == 401


async def test_an_oversized_message_closes_with_1009() -> None:
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("z" * 5000)
        await ws.wait_closed()
        closed.set_result(ws.close_code)

    async with server(handler) as url, await connect(url, max_size=4096) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1009
        assert await asyncio.wait_for(closed, 5) == 1009  # the server was told why


async def test_a_server_that_stops_reading_is_dropped_by_the_keepalive() -> None:
    """The send buffer fills, so the ping cannot leave either: the timeout still fires."""

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade(reader, writer)
        await asyncio.sleep(30)  # never reads again

    async with raw_server(deaf) as url:
        ws = await connect(url, ping_interval=0.2, ping_timeout=0.5, max_size=1 << 24)

        async def flood() -> None:
            while True:
                await ws.send("x" * (1 << 20))

        sender = asyncio.create_task(flood())
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 20)
        assert info.value.code == 1011
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(sender, 5)  # the blocked send is released too


async def test_a_message_arrives_while_a_send_waits_for_a_full_buffer() -> None:
    """Receiving sends nothing back, so it never waits for the send buffer to drain."""
    buffer_full, checked = asyncio.Event(), asyncio.Event()

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade(reader, writer)
        await buffer_full.wait()  # reads nothing until then
        writer.write(b"\x81\x05hello")
        await writer.drain()
        await checked.wait()
        writer.transport.abort()  # so that the client's close need not wait for the buffer

    async with raw_server(busy) as url, await connect(url, ping_interval=None) as ws:

        async def flood() -> None:
            while True:
                await ws.send("x" * (1 << 20))

        sender = asyncio.create_task(flood())
        transport = ws._writer.transport
        for _ in range(500):
            if transport.get_write_buffer_size() > 0:  # the kernel's buffer is full too
                break
            await asyncio.sleep(0.01)
        buffer_full.set()
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        assert not sender.done()  # still waiting for the buffer
        sender.cancel()
        checked.set()


async def test_a_silent_server_is_dropped_by_the_keepalive() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade(reader, writer)
        await asyncio.sleep(30)  # reads nothing, answers no ping

    async with raw_server(silent) as url:
        ws = await connect(url, ping_interval=0.1, ping_timeout=0.3)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 20)
    assert info.value.code == 1011 and "ping" in info.value.reason
    assert hung_master(info.value)  # the link dials the next master at once


@pytest.mark.parametrize(
    "answer, error",
    [
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
            "Sec-WebSocket-Accept",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP 200"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP response"),
        (b"HTTP/1.1 \xb201 Switching\r\n\r\n", "not an HTTP response"),  # '\xb2' is a digit
        (b"HTTP/1.1 101 Switching", "closed the connection during the upgrade"),
    ],
)
async def test_a_wrong_handshake_is_refused(answer: bytes, error: str) -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(wrong) as url:
        with pytest.raises(WebSocketError, match=error):
            await connect(url, open_timeout=5)


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\xc1\x02hi", 1002),  # RSV1 set: compression that was never negotiated
        (b"\x81\x82abcd\x09\x0b", 1002),  # masked: servers never mask
        (b"\x88\x01\x03", 1002),  # a close frame with a one-byte body
        (b"\x88\x02\x03\xed", 1002),  # close code 1005 is never sent
        (b"\x88\x02\x03\xe7", 1002),  # close code 999
        (b"\x88\x04\x03\xe8\xff\xfe", 1007),  # a close reason that is not UTF-8
        (b"\x81\x02\xff\xfe", 1007),  # a text message that is not UTF-8
        (b"\x89\x7e\x00\x80" + b"p" * 128, 1002),  # a ping over 125 bytes
    ],
)
async def test_a_broken_frame_from_the_server_closes_with_the_right_code(
    frame: bytes, code: int
) -> None:
    told: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade(reader, writer)
        writer.write(frame)
        await writer.drain()
        told.set_result(await reader.read(100))  # the client's close frame

    async with raw_server(bad) as url, await connect(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        close = await asyncio.wait_for(told, 5)
    assert info.value.code == code
    assert close[0] == 0x88 and close[1] & 0x80  # a masked close frame...
    payload = unmask(close[6 : 6 + (close[1] & 0x7F)], close[2:6])
    assert int.from_bytes(payload[:2], "big") == code  # ...that says why


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1/", "ws://127.0.0.1:99999/", "ws:///nohost", f"ws://{'a' * 64}.example/"],
)
async def test_a_bad_url_is_a_websocket_error(url: str) -> None:
    with pytest.raises(WebSocketError, match=r"URL|cannot connect"):
        await connect(url)


async def test_the_open_timeout_covers_a_server_that_never_answers() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with raw_server(mute) as url:
        with pytest.raises(TimeoutError):
            await connect(url, open_timeout=0.3)


async def test_over_tls_with_a_private_ca() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with server(echo, ssl=server_ctx) as url:
        async with await connect(url, ssl=client_ctx) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(url)  # the system's CAs do not know this one


async def test_every_frame_the_client_sends_is_masked() -> None:
    """Clients must mask (RFC 6455 5.3): with a fresh key per frame, text and binary alike."""
    frames: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()

    async def read_two(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade(reader, writer)
        got = []
        for _ in range(2):
            b0, b1 = await reader.readexactly(2)
            assert b1 & 0x80, "an unmasked frame from the client"
            key = await reader.readexactly(4)
            got.append(bytes([b0]) + key + unmask(await reader.readexactly(b1 & 0x7F), key))
        frames.set_result(got)

    async with raw_server(read_two) as url, await connect(url) as ws:
        await ws.send("hello")
        await ws.send(b"\x00\x01")
        text, binary = await asyncio.wait_for(frames, 5)
    assert (text[0], text[5:]) == (0x81, b"hello")
    assert (binary[0], binary[5:]) == (0x82, b"\x00\x01")
    assert text[1:5] != binary[1:5]


def unmask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))
