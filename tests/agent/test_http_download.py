"""Package downloads over a real socket: a connection that drops mid-body is an error that says
so and leaves no partial file (the checksum would catch it too, but call it corruption)."""

import hashlib
import socket
import struct
import threading
from pathlib import Path

import pytest

from agent.executor.deploy import retryable
from agent.http import Http, HttpError, Progress

BODY = b"x" * 100_000


def serve(responses: list[bytes]) -> str:
    """A server answering its next connections with `responses`, one each, then closing them."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def run() -> None:
        with srv:
            for response in responses:
                conn, _ = srv.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(response)

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}/pkg.zip"


async def test_a_dropped_download_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    url = serve(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + BODY,  # drops after 100 kB
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + BODY,
        ]
    )
    dest = tmp_path / "pkg.zip"
    try:
        await Http().download(url, {}, dest)
    except HttpError as exc:
        assert str(exc) == "connection closed after 100000 of 1048576 bytes"
    else:
        raise AssertionError("a truncated download was taken for a whole one")
    assert not dest.exists()
    # The same body, whole this time.
    assert await Http().download(url, {}, dest) == hashlib.sha256(BODY).hexdigest()
    assert dest.read_bytes() == BODY


def serve_then(head: bytes, then: str) -> str:
    """A server sending `head`, then resetting the connection or going silent."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    release = threading.Event()

    def run() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(head)
                if then == "reset":  # SO_LINGER 0: close sends RST, not FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    release.wait(30)

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}/pkg.zip"


@pytest.mark.parametrize("then", ["reset", "stall"])
async def test_a_reset_or_stalled_body_is_a_lost_connection_to_retry(
    tmp_path: Path, then: str
) -> None:
    url = serve_then(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + BODY, then)
    dest = tmp_path / "pkg.zip"
    progress = Progress()
    try:
        await Http().fetch_into(url, {}, dest, progress, timeout=1.0)
    except HttpError as exc:  # not OSError: that would be taken for a failed write, not retried
        assert exc.status is None and retryable(exc)
        assert str(exc).startswith("connection lost after "), str(exc)
    else:
        raise AssertionError("a broken download was taken for a whole one")
    # What arrived stays, to resume from with a Range request.
    assert progress.got == dest.stat().st_size <= len(BODY)


async def test_a_body_of_several_buffers_or_sent_in_chunks_arrives_whole(tmp_path: Path) -> None:
    big = bytes(range(256)) * 10_000  # 2.4 MiB: over two reads of the one buffer
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY, big[:70_000]))
    url = serve(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n",
        ]
    )
    dest = tmp_path / "pkg.zip"
    assert await Http().download(url, {}, dest) == hashlib.sha256(big).hexdigest()
    assert dest.read_bytes() == big
    assert await Http().download(url, {}, dest) == hashlib.sha256(BODY + big[:70_000]).hexdigest()
    assert dest.read_bytes() == BODY + big[:70_000]
