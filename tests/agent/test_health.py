"""Health probes against real sockets, a real HTTP server and real commands."""

import asyncio
import http.server
import socket
import threading

import pytest

from agent.executor import health
from agent.executor.health import HealthMonitor, ProbeContext
from protocol.manifest import HealthCheck
from protocol.states import HealthState


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path == "/ok" else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_tcp_probe(listener):
    assert (await health.probe_tcp("127.0.0.1", listener, 2)).ok
    port = closed_port()
    result = await health.probe_tcp("127.0.0.1", port, 2)
    assert not result.ok
    assert f"tcp 127.0.0.1:{port}" in result.detail and "refused" in result.detail.lower()


async def test_http_probe_expects_2xx(http_server):
    assert (await health.probe_http(http_server + "/ok", 2)).ok
    bad = await health.probe_http(http_server + "/down", 2)
    assert not bad.ok and "HTTP 503" in bad.detail
    gone = await health.probe_http(f"http://127.0.0.1:{closed_port()}/", 2)
    assert not gone.ok and gone.detail.startswith("GET ")


async def test_command_probe_exit_code_timeout_and_relative_program(tmp_path):
    ctx = ProbeContext(root=tmp_path, env={"WANTED": "yes"})
    assert (await health.probe_command(["/bin/sh", "-c", 'test "$WANTED" = yes'], ctx, 5)).ok
    failed = await health.probe_command(["/bin/sh", "-c", "echo broken >&2; exit 3"], ctx, 5)
    assert not failed.ok and "exit 3" in failed.detail and "broken" in failed.detail
    slow = await health.probe_command(["/bin/sh", "-c", "sleep 30"], ctx, 0.3)
    assert not slow.ok and "still running" in slow.detail
    (tmp_path / "bin").mkdir()
    check = tmp_path / "bin" / "check"
    check.write_text("#!/bin/sh\nexit 0\n")
    check.chmod(0o755)
    assert (await health.probe_command(["bin/check"], ctx, 5)).ok  # relative to the package
    missing = await health.probe_command(["bin/nope"], ctx, 5)
    assert not missing.ok and "cannot run" in missing.detail


async def test_monitor_follows_a_real_command_and_reports_changes_only(tmp_path):
    flag = tmp_path / "healthy"
    check = HealthCheck(
        command=["/bin/sh", "-c", f"test -f {flag}"], interval=0.05, failure_threshold=3
    )
    seen: list[tuple[HealthState, str | None]] = []
    mon = HealthMonitor(check, ProbeContext(), lambda h, d: seen.append((h, d)))
    mon.start()
    try:
        await _until(lambda: seen, "first verdict")
        assert seen[0][0] == HealthState.UNHEALTHY and "exit 1" in seen[0][1]
        flag.touch()
        await _until(lambda: seen[-1][0] == HealthState.HEALTHY, "healthy")
        count = len(seen)
        await asyncio.sleep(0.3)
        assert len(seen) == count, "no report without a change"
        flag.unlink()
        await _until(lambda: seen[-1][0] == HealthState.UNHEALTHY, "unhealthy again")
    finally:
        mon.stop()
    assert [h for h, _ in seen] == [
        HealthState.UNHEALTHY,
        HealthState.HEALTHY,
        HealthState.UNHEALTHY,
    ]


async def test_monitor_needs_threshold_failures_once_healthy(monkeypatch):
    script = [False, True, False, True, False, False, False]
    probes = iter(script)

    async def scripted(check, ctx):
        ok = next(probes, False)
        return health.ProbeResult(ok, "ok" if ok else "down")

    monkeypatch.setattr(health, "probe", scripted)
    seen: list[HealthState] = []
    check = HealthCheck(tcp=1, interval=0.01, failure_threshold=3)
    mon = HealthMonitor(check, ProbeContext(), lambda h, d: seen.append(h))
    mon.start()
    try:
        await _until(lambda: len(seen) >= 3, "three reports")
    finally:
        mon.stop()
    # Before the first success a failure counts at once; after it, one lost probe does not.
    assert seen == [HealthState.UNHEALTHY, HealthState.HEALTHY, HealthState.UNHEALTHY]


async def _until(predicate, what, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
