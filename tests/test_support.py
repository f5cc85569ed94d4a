"""The test helpers themselves: a master started on a port another process took meanwhile."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import Master, free_port


class _AnyOk(BaseHTTPRequestHandler):
    """Another test's server: 200 to every path, /healthz included."""

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def squatter() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _AnyOk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_master_whose_port_was_taken_starts_on_another(squatter: int, tmp_path: Path) -> None:
    master = Master(tmp_path / "m")
    master._move_to(squatter)  # as if another process took the port free_port() gave
    try:
        master.launch(timeout=180)  # two starts, the first to the failed bind
        assert master.port != squatter
        assert master.url.endswith(f":{master.port}")
        assert master.api().get("/nodes") == []  # the master itself answers, logged in
    finally:
        master.stop()
