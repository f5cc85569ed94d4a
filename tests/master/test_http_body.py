"""Request bodies through the master's httptools protocol (master/server.py `_FastBody`): large
bodies skip the parser and arrive whole, in big pieces; the connection stays usable for the next
request (keep-alive and pipelined); chunked bodies, refused bodies and cut connections behave
as with plain uvicorn. Bodies read straight from the socket by a spool (`DirectBody`,
`Body.pour`) arrive whole and leave the connection as usable; cut and stalled ones end so.
A real uvicorn server on a socket, an ASGI app that reports what it got."""

import asyncio
import hashlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from master.api.body import Body
from master.server import READ_SIZE, guarded_protocol, tune_allocator
from master.storage.spool import Spool, new_hash
from tests.support import free_port, wait_for

pytest.importorskip("httptools")

LIMIT = 50 << 20  # the app refuses larger bodies without reading them
IDLE = 1.5  # seconds a body read straight from the socket may pause
cuts: list[int] = []  # bytes an app had when its client went away
poured: list[dict[str, Any]] = []  # how each body read by /pour ended


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    length = int(dict(scope["headers"]).get(b"content-length", b"0"))
    if length > LIMIT:
        await answer(send, 413, {"error": "too large"})
        return
    if scope["path"].startswith("/pour"):
        await pour(scope, receive, send)
        return
    body = Body(receive)
    h, size = hashlib.sha256(), 0
    while (chunk := await body.next()) is not None:
        h.update(chunk)
        size += len(chunk)
    if body.cut:
        cuts.append(size)
        return
    await answer(send, 200, {"path": scope["path"], "size": size, "sha": h.hexdigest()})


async def pour(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Spool the body to a file straight from the socket, as a tus PATCH does."""
    body = Body(receive, scope)
    read, fd = os.pipe()  # any fd to write to: a thread drains the pipe, counting and hashing
    got = hashlib.sha256()
    drained = threading.Thread(target=drain, args=(read, got))
    drained.start()
    spool = Spool(fd, new_hash(), 0)
    direct = await body.pour(spool, IDLE)
    if not direct:
        while (chunk := await body.next()) is not None:
            await spool.feed(chunk)
    await spool.drain()
    os.close(fd)
    drained.join()
    poured.append({"direct": direct, "size": spool.offset, "cut": body.cut})
    if body.stalled:
        await answer(send, 408, {"error": "stalled", "size": spool.offset})
    elif not body.cut:
        sha = spool.hasher.hexdigest()
        assert sha == got.hexdigest(), "the hash thread and the written bytes disagree"
        doc = {"path": scope["path"], "size": spool.offset, "sha": sha, "direct": direct}
        await answer(send, 200, doc)


def drain(fd: int, h: Any) -> None:
    with open(fd, "rb", buffering=0) as f:
        while data := f.read(1 << 20):
            h.update(data)


async def answer(send: Any, status: int, doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=guarded_protocol(), log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, what="uvicorn")
    yield port
    server.should_exit = True
    thread.join(30)


def request(path: str, body: bytes, length: int | None = None) -> bytes:
    """A request with `body`; `length` declares another Content-Length (the rest comes later)."""
    declared = len(body) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {declared}\r\n\r\n"
    return head.encode() + body


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, Any]]:
    """One response off `sock` (`buf` keeps what arrived after it)."""
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        assert more, "the server closed the connection"
        buf += more
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        more = sock.recv(65536)
        assert more, "the server closed the connection"
        rest += more
    buf[:] = rest[length:]
    doc = json.loads(rest[:length]) if headers.get("content-type") == "application/json" else {}
    return int(lines[0].split()[1]), doc


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_a_large_body_arrives_whole_in_big_pieces_and_keep_alive_works(port):
    data = os.urandom(24 << 20)
    small = b'{"a": 1}'
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(request("/big", data))
        status, doc = read_response(sock, buf)
        assert status == 200
        assert doc["size"] == len(data) and doc["sha"] == hashlib.sha256(data).hexdigest()
        # The same connection, after a body that skipped the parser: a fresh one took over.
        for path in ("/next", "/again"):
            sock.sendall(request(path, small))
            status, doc = read_response(sock, buf)
            assert (status, doc["path"], doc["size"]) == (200, path, len(small))


def test_pipelined_requests_after_a_large_body(port):
    data = os.urandom(5 << 20)
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(request("/one", data) + request("/two", b"xyz") + request("/three", b""))
        answers = [read_response(sock, buf) for _ in range(3)]
    assert [(s, d["path"], d["size"]) for s, d in answers] == [
        (200, "/one", len(data)),
        (200, "/two", 3),
        (200, "/three", 0),
    ]
    assert answers[0][1]["sha"] == hashlib.sha256(data).hexdigest()


def test_a_chunked_body_goes_through_the_parser(port):
    parts = [os.urandom(n) for n in (1 << 20, 3, 2 << 20, 70_000)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(head + body + request("/after", b"ok"))
        status, doc = read_response(sock, buf)
        assert status == 200 and doc["sha"] == hashlib.sha256(b"".join(parts)).hexdigest()
        assert read_response(sock, buf)[1]["path"] == "/after"


def test_length_and_chunked_together_are_refused(port):
    """The parser refuses the ambiguous framing (request smuggling) before any body bypass."""
    with connect(port) as sock:
        sock.sendall(
            b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + request("/hidden", b"")
        )
        buf = bytearray()
        status, _ = read_response(sock, buf)
        assert status == 400
        assert sock.recv(65536) == b""  # closed; /hidden never ran


def test_a_refused_body_is_skipped_and_the_connection_goes_on(port):
    """The app answers 413 without reading; the body still goes by, then the next request."""
    data = b"q" * (LIMIT + 1)
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(request("/huge", b"", length=len(data)))
        assert read_response(sock, buf)[0] == 413
        sock.sendall(data + request("/after", b"abc"))
        status, doc = read_response(sock, buf)
        assert (status, doc["path"], doc["size"]) == (200, "/after", 3)


def test_a_cut_body_is_reported_to_the_app(port):
    cuts.clear()
    with connect(port) as sock:
        sock.sendall(request("/cut", b"c" * (3 << 20), length=9_000_000))
    wait_for(lambda: cuts, 30, what="the app to see the cut")
    assert 0 < cuts[0] <= 3 << 20


def test_a_body_read_straight_from_the_socket_arrives_whole_and_keep_alive_works(port):
    data = os.urandom(24 << 20)
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(request("/pour", data))
        status, doc = read_response(sock, buf)
        assert (status, doc["direct"], doc["size"]) == (200, True, len(data))
        assert doc["sha"] == hashlib.sha256(data).hexdigest()
        # The connection goes on, through the parser again, and may pour once more.
        sock.sendall(request("/next", b'{"a": 1}'))
        assert read_response(sock, buf)[1]["size"] == 8
        sock.sendall(request("/pour-again", data[:3_000_001]))
        status, doc = read_response(sock, buf)
        assert (status, doc["size"]) == (200, 3_000_001)
        assert doc["sha"] == hashlib.sha256(data[:3_000_001]).hexdigest()


def test_pipelined_requests_after_a_body_read_straight_from_the_socket(port):
    data = os.urandom(5 << 20)
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(request("/pour", data) + request("/two", b"xyz") + request("/pour3", b"a"))
        answers = [read_response(sock, buf) for _ in range(3)]
    assert [(s, d["path"], d["size"]) for s, d in answers] == [
        (200, "/pour", len(data)),
        (200, "/two", 3),
        (200, "/pour3", 1),
    ]
    assert answers[0][1]["sha"] == hashlib.sha256(data).hexdigest()


def test_a_client_waiting_for_100_continue_gets_it_before_a_body_read_from_the_socket(port):
    """curl sends `Expect: 100-continue` with large bodies and waits for the interim answer."""
    data = os.urandom(3 << 20)
    head = (
        f"POST /pour HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with connect(port) as sock:
        sock.sendall(head)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        assert bytes(buf).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buf[: len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        sock.sendall(data)
        status, doc = read_response(sock, buf)
    assert (status, doc["direct"], doc["size"]) == (200, True, len(data))
    assert doc["sha"] == hashlib.sha256(data).hexdigest()


def test_a_cut_body_read_straight_from_the_socket_keeps_what_arrived(port):
    poured.clear()
    with connect(port) as sock:
        sock.sendall(request("/pour-cut", b"c" * (3 << 20), length=9_000_000))
    wait_for(lambda: poured, 30, what="the app to see the cut")
    assert poured[0]["direct"] and poured[0]["cut"]
    assert 0 < poured[0]["size"] <= 3 << 20


def test_a_stalled_body_read_straight_from_the_socket_is_answered_and_closed(port):
    poured.clear()
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(request("/pour-stall", b"s" * (2 << 20), length=5 << 20))
        status, doc = read_response(sock, buf)
        assert (status, doc["size"]) == (408, 2 << 20)
        assert sock.recv(65536) == b""  # closed: the rest of the body is not awaited
    assert poured[0]["direct"] and poured[0]["cut"]


async def test_socket_reads_are_a_mebibyte():
    """asyncio's socket transport reads `max_size` bytes at a time (256 KiB by default)."""
    from uvicorn.server import ServerState

    class Transport(asyncio.Transport):
        max_size = 256 * 1024

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return ("127.0.0.1", 1) if name in ("sockname", "peername") else default

        def close(self) -> None:
            pass

    config = uvicorn.Config(app, log_level="warning")
    config.load()
    protocol = guarded_protocol()(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    assert transport.max_size == READ_SIZE == 1 << 20
    protocol.connection_lost(None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_allocator_tuning_applies_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert tune_allocator() is True
