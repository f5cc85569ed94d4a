"""Helpers for the release tests: one small service whose versions behave as told (crash at start,
never become healthy, stop slowly), packaged per version, and a module of instances each on its
own port (`${PORT}` from the instance's own env)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.batch_support import wait_operation
from tests.support import Api, build_package, free_port, wait_for

# Answers GET with its version; records start and stop with the time in an events file.
SERVICE = """\
import http.server, os, signal, sys, time

def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

name = os.environ.get("GDOS_INSTANCE_NAME", "svc")
version = arg("--version-text", "?")
events = arg("--events")

def event(kind):
    if events:
        with open(events, "a") as f:
            f.write(f"{name} {kind} {version} {time.time():.6f}\\n")

def on_term(*_):
    event("stop")
    time.sleep(float(arg("--stop-after", "0")))
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
event("start")
if "--crash" in sys.argv:
    print("cannot start: broken on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(float(arg("--ready-after", "0")))
if "--never-ready" in sys.argv:
    while True:
        time.sleep(3600)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{version} {os.environ.get('GDOS_INSTANCE_INDEX')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

print("serving", version, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(arg("--port"))), H).serve_forever()
"""


def package(
    dest: Path,
    version: str,
    events: Path,
    *flags: str,
    name: str = "svc",
    files: dict[str, str | bytes] | None = None,
    **manifest: Any,
) -> Path:
    body: dict[str, Any] = {
        "args": ["--port", "${PORT}", "--version-text", version, "--events", str(events), *flags],
        "health": {"tcp": "${PORT}", "interval": 0.2, "ready_timeout": 20},
        "stop_timeout": 5,
        "keep_releases": 2,
    }
    body.update(manifest)
    return build_package(dest, name, version, manifest=body, script=SERVICE, files=files)


def answer(port: int) -> str | None:
    url = f"http://127.0.0.1:{port}/"
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
        return str(r.read().decode())
    return None


@dataclass
class Fleet:
    """A system with one module `svc` and its instances, each with a PORT of its own."""

    api: Api
    system_id: str
    module_id: str
    instances: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def make(
        cls, api: Api, nodes: list[str], per_node: int, version: str | None, name: str = "shop"
    ) -> Fleet:
        system = api.post("/systems", {"name": name})
        mod = api.post(
            f"/systems/{system['id']}/modules",
            {"name": "svc", "package": "svc", "version": version},
        )
        fleet = cls(api, system["id"], mod["id"])
        for i in range(per_node * len(nodes)):
            node = nodes[i % len(nodes)]
            inst = api.post("/instances", {"module_id": mod["id"], "node_id": node}, expect=202)
            fleet.instances.append(inst["id"])
        fleet.wait(lambda i: i["state"] == "stopped", "deploys")
        for iid in fleet.instances:
            fleet.ports[iid] = free_port()
            r = api.request(
                "PATCH", f"/instances/{iid}", json={"env": {"PORT": str(fleet.ports[iid])}}
            )
            assert r.status_code == 200, r.text
        return fleet

    def get(self, iid: str) -> dict[str, Any]:
        return dict(self.api.get(f"/instances/{iid}"))

    def all(self) -> list[dict[str, Any]]:
        return [self.get(i) for i in self.instances]

    def wait(self, predicate: Any, what: str, timeout: float = 120) -> None:
        wait_for(lambda: all(predicate(i) for i in self.all()), timeout, 0.2, what)

    def start(self) -> None:
        op = self.api.post(f"/systems/{self.system_id}/start", expect=202)
        assert wait_operation(self.api, op["operation_id"], 120)["state"] == "succeeded"
        self.wait(lambda i: i["state"] == "running" and i["health"] == "healthy", "healthy")

    def pids(self) -> dict[str, int]:
        return {i["id"]: i["pid"] for i in self.all()}

    def rollout(self, expect: int = 202, **body: Any) -> dict[str, Any]:
        return dict(self.api.post(f"/modules/{self.module_id}/rollout", body, expect=expect))

    def answers(self) -> dict[str, str | None]:
        return {iid: answer(port) for iid, port in self.ports.items()}


def finished(api: Api, op_id: str, timeout: float = 180) -> dict[str, Any]:
    return dict(wait_operation(api, op_id, timeout))


def steps_by_instance(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {st["instance_id"]: st for st in op["steps"]}


def fetches(agent_log: Path, version: str) -> int:
    """How many times an agent fetched `svc <version>` (it logs each download)."""
    text = agent_log.read_text(errors="replace") if agent_log.exists() else ""
    return text.count(f"fetching package svc {version} ")


def processes_of(iid: str) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("GDOS_INSTANCE_ID") == iid:
                out.append(proc)
    return out


def read_events(path: Path) -> list[tuple[str, str, str]]:
    """(instance name, start|stop, version) in order."""
    if not path.exists():
        return []
    return [tuple(line.split()[:3]) for line in path.read_text().splitlines()]  # type: ignore[misc]


def state_record(work_dir: Path, iid: str) -> dict[str, Any]:
    """The instance's record in an agent's state file (the file itself, not its slots)."""
    return dict(json.loads((work_dir / "agent-state.json").read_text())["instances"][iid])
