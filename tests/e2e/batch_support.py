"""Helpers for the batch-operation tests: a configurable service, systems built through the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support import Api, build_package, wait_for

# One small program plays every role. It records what it does (start, ready, stop) with the
# time in a shared events file, so tests compare real process times, not API timestamps.
SERVICE = """\
import http.server, os, signal, socket, sys, threading, time

def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

name = os.environ.get("GDOS_INSTANCE_NAME", "svc")
events = arg("--events")

def event(kind):
    if events:
        with open(events, "a") as f:
            f.write(f"{name} {kind} {time.time():.6f}\\n")

def on_term(*_):
    event("stop")
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
event("start")
time.sleep(float(arg("--ready-after", "0")))
if "--never-ready" in sys.argv:
    while True:
        time.sleep(3600)
port = int(arg("--port", "0")) or int(arg("--port-base")) + int(name.rsplit("-", 1)[1])
if "--http" in sys.argv:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    event("ready")
    server.serve_forever()
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen()
event("ready")
while True:
    conn, _ = sock.accept()
    conn.close()
"""

# Health check of an instance whose port derives from its name (two on one machine).
CHECK_BY_NAME = """\
import os, socket, sys
port = int(sys.argv[1]) + int(os.environ["GDOS_INSTANCE_NAME"].rsplit("-", 1)[1])
socket.create_connection(("127.0.0.1", port), timeout=1).close()
"""


def service_package(
    dest: Path, name: str, manifest: dict[str, Any], files: dict[str, str | bytes] | None = None
) -> Path:
    return build_package(dest, name=name, manifest=manifest, script=SERVICE, files=files)


def system_with_modules(api: Api, name: str, modules: list[dict[str, Any]]) -> tuple[str, dict]:
    """Create a system and its modules; returns (system id, {module name: module id})."""
    system = api.post("/systems", {"name": name})
    ids = {}
    for mod in modules:
        ids[mod["name"]] = api.post(f"/systems/{system['id']}/modules", mod)["id"]
    return system["id"], ids


def deploy_all(api: Api, placements: list[tuple[str, str]], timeout: float = 120) -> list[str]:
    """Deploy (module id, node id) pairs; waits until every instance is stopped (deployed)."""
    ids = [
        api.post("/instances", {"module_id": m, "node_id": n}, expect=202)["id"]
        for m, n in placements
    ]
    wait_for(
        lambda: all(api.get(f"/instances/{i}")["state"] == "stopped" for i in ids),
        timeout,
        interval=0.2,
        what="deploys",
    )
    return ids


def run_operation(
    api: Api, system_id: str, kind: str, body: Any = None, timeout: float = 120
) -> dict:
    started = api.post(f"/systems/{system_id}/{kind}", body, expect=202)
    assert started["operation_id"] == started["id"] and started["kind"] == kind
    return wait_operation(api, started["operation_id"], timeout)


def wait_operation(api: Api, op_id: str, timeout: float = 120) -> dict:
    return wait_for(
        lambda: (op := api.get(f"/operations/{op_id}"))["state"] != "running" and op,
        timeout,
        interval=0.1,
        what=f"operation {op_id}",
    )


def read_events(path: Path) -> dict[tuple[str, str], list[float]]:
    """{(instance name, kind): [times]} from the services' shared events file."""
    out: dict[tuple[str, str], list[float]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        name, kind, ts = line.split()
        out.setdefault((name, kind), []).append(float(ts))
    return out


def now() -> float:
    return time.time()


# A service that becomes ready (creates `ready` in its working directory) after a delay.
SLOW_READY = """\
import pathlib, sys, time
time.sleep(float(sys.argv[1]))
pathlib.Path("ready").touch()
while True:
    time.sleep(3600)
"""
READY_FILE_CHECK = {"command": ["/bin/sh", "-c", "test -f bin/ready"], "interval": 0.5}


def processes_by_marker() -> dict[str, list[int]]:
    """{GDOS_INSTANCE_ID: [pids]} in one pass over the process table."""
    import contextlib

    import psutil

    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            value = proc.environ().get("GDOS_INSTANCE_ID")
            if value:
                found.setdefault(value, []).append(proc.pid)
    return found
