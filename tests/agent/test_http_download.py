"""Package downloads over a real socket: a connection that drops mid-body is an error that says
so and leaves no partial file (the checksum would catch it too, but call it corruption)."""

import hashlib
import socket
import threading
from pathlib import Path

from agent.http import Http, HttpError

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
