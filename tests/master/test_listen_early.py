"""The port is taken before the application loads: connections made while a master starts wait
for it (in the kernel's queue) instead of being refused."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from master.__main__ import main as master_main
from master.listen import close_all, listen
from tests.support import ADMIN_PASSWORD, Master, free_port


def test_listening_sockets_queue_connections_before_anything_accepts() -> None:
    sockets = listen("127.0.0.1", 0)
    try:
        (sock,) = sockets
        port = sock.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
        for client in clients:
            client.close()
    finally:
        close_all(sockets)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_taken_port_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--port", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)]
        code = master_main([*argv, "--admin-password", ADMIN_PASSWORD])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"gdos-master: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_a_request_sent_while_the_master_starts_is_answered_once_it_serves(
    tmp_path: Path,
) -> None:
    """The port listens before the application is imported: a connection made before the
    master is ready is queued and answered, not refused."""
    master = Master(tmp_path / "m", port=free_port())
    master.start_process()
    try:
        for _ in range(3000):  # the first moment the port takes a connection
            try:
                conn = socket.create_connection(("127.0.0.1", master.port), timeout=60)
                break
            except ConnectionRefusedError:
                assert master.alive(), master.tail()
                time.sleep(0.01)
        else:
            pytest.fail(f"the master never listened\n{master.tail()}")
        ready_before = "ready on" in master.tail()
        with conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = conn.makefile("rb").read()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert not ready_before, "the port listened only once the master was ready"
        assert "ready on" in master.tail()
    finally:
        master.stop()


def test_an_unreachable_database_is_one_line_exit_2_and_the_port_let_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The port is taken before the database is checked; a database that does not answer
    still ends the start with one line, and the port is free again."""
    port, dead = free_port(), free_port()
    argv = ["--port", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)]
    url = f"postgresql+psycopg://gdos@127.0.0.1:{dead}/gdos"
    code = master_main([*argv, "--admin-password", ADMIN_PASSWORD, "--db-url", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("gdos-master: cannot use the database at"), err
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
