"""Real parts for tests: a master and agents as subprocesses, packages built on the fly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from agent.executor.states import ILLEGAL

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "test-admin-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """Environment for our subprocesses: this checkout first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDOS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what or predicate}: {last_exc!r}"
    )


class Api:
    """A logged-in REST client with helpers that fail loudly."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.client = httpx.Client(base_url=self.base, timeout=60.0)
        if token:
            self.client.headers["Authorization"] = f"Bearer {token}"
        self.token = token

    @classmethod
    def login(cls, base: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> Api:
        r = httpx.post(
            f"{base}/api/v1/auth/login", json={"username": username, "password": password}
        )
        r.raise_for_status()
        return cls(base, r.json()["token"])

    def request(
        self, method: str, path: str, expect: int | tuple[int, ...] | None = None, **kw: Any
    ) -> httpx.Response:
        r = self.client.request(method, "/api/v1" + path, **kw)
        if expect is not None:
            codes = (expect,) if isinstance(expect, int) else expect
            assert r.status_code in codes, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, expect=200, **kw).json()

    def post(
        self,
        path: str,
        body: Any = None,
        expect: int | tuple[int, ...] = (200, 201, 202),
        **kw: Any,
    ) -> Any:
        r = self.request("POST", path, expect=expect, json=body, **kw)
        return r.json() if r.content else None

    def upload(self, zip_path: Path, expect: int | tuple[int, ...] = 201) -> httpx.Response:
        return self.request(
            "POST",
            "/packages",
            expect=expect,
            content=zip_path.read_bytes(),
            headers={"Content-Type": "application/zip"},
        )

    def close(self) -> None:
        self.client.close()


class Proc:
    """A subprocess with its output in a log file, shown when a test fails."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, cwd: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        # In a session of its own, as a service manager starts a daemon (systemd: each service
        # its own session, so its own scheduling group under the kernel's autogroup).
        self.own_session = False

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])


class Master(Proc):
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        ca_file: Path | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.own_port = port is None  # a port of our choosing may be taken: we pick another
        self.port = port or free_port()
        self._log_from = 0  # the log's size when the process last started
        self.ca_file = ca_file  # set when the master serves TLS (then extra carries --tls-*)
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            *(program or [sys.executable, "-m", "master"]),  # e.g. [frozen gdos-master binary]
            "--port",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(data_dir),
            "--admin-password",
            ADMIN_PASSWORD,
            *(extra or []),
        ]
        super().__init__(
            "master", argv, data_dir / "master.log", data_dir, child_env(**(env or {}))
        )

    def start(self) -> None:
        self.launch()

    def launch(self, timeout: float = 60) -> Master:
        self.start_process()
        wait_for(self._healthy, timeout, what=f"master on {self.url}\n{self.tail()}")
        return self

    def start_process(self) -> None:
        """Start the process without waiting for it (`_healthy` says when it serves)."""
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()

    def _healthy(self) -> bool:
        """True once this master (not another process that took its port) answers /healthz.
        A port of our choosing that another process took meanwhile: start again on a new one."""
        if not self.alive():
            if self.own_port and "address already in use" in self._new_log():
                self._move_to(free_port())
                self.start_process()
                return False
            raise RuntimeError(f"master exited:\n{self.tail()}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            verify = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
            reply = httpx.get(self.url + "/healthz", timeout=2, verify=verify)
            body = reply.json() if reply.status_code == 200 else {}
            return body.get("status") == "ok" and "version" in body and self._listens()
        return False

    def _listens(self) -> bool:
        """This master's process (or a child: a frozen build's bootloader) listens on the port."""
        import psutil

        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            for proc in (root, *root.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    for conn in proc.net_connections(kind="tcp"):
                        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port:
                            return True
        return False

    def _new_log(self) -> str:
        """What the master logged since its last start."""
        with contextlib.suppress(FileNotFoundError), open(self.log_path, errors="replace") as log:
            log.seek(self._log_from)
            return log.read()
        return ""

    def _move_to(self, port: int) -> None:
        """Listen on `port` instead (its URL, and an advertised URL that names the old one)."""
        old = f"127.0.0.1:{self.port}"
        self.argv = [a.replace(old, f"127.0.0.1:{port}") for a in self.argv]
        self.port = port
        self.url = f"{'https' if self.ca_file else 'http'}://127.0.0.1:{port}"

    @property
    def join_token(self) -> str:
        return (self.data_dir / "join-token").read_text().strip()

    def api(self) -> Api:
        return Api.login(self.url)


class Agent(Proc):
    def __init__(
        self,
        master: Master,
        work_dir: Path,
        extra: list[str] | None = None,
        token: str | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.master = master
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            *(program or [sys.executable, "-m", "agent"]),  # e.g. [frozen gdos-agent binary]
            "--master",
            master.url,
            "--work-dir",
            str(work_dir),
            "--token",
            token or master.join_token,
            *(extra or []),
        ]
        super().__init__(
            "agent", argv, work_dir.parent / f"{work_dir.name}.log", work_dir.parent, child_env()
        )

    @property
    def node_id(self) -> str:
        return json.loads((self.work_dir / "agent-credential.json").read_text())["node_id"]

    def stop(self, timeout: float = 15) -> None:
        """Stop the agent; an illegal state change in its log fails the test (after its
        services are killed: a failed test leaves nothing running)."""
        super().stop(timeout)
        logged = iter_lines(self.log_path) if self.log_path.exists() else iter([])
        illegal = [line.strip() for line in logged if ILLEGAL in line]
        if illegal:
            kill_services_under(self.work_dir)
            raise AssertionError(f"the agent logged {ILLEGAL}s:\n" + "\n".join(illegal))

    def start_and_wait(self, api: Api, timeout: float = 60) -> str:
        """Start and wait until the master shows this node online; returns the node id."""
        self.start()
        wait_for(
            lambda: (self.work_dir / "agent-credential.json").exists() or self._dead(),
            timeout,
            what=f"enrolment\n{self.tail()}",
        )
        node_id = self.node_id
        wait_for(
            lambda: api.get(f"/nodes/{node_id}")["status"] == "online" or self._dead(),
            timeout,
            what=f"node online\n{self.tail()}",
        )
        return node_id

    def _dead(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"agent exited:\n{self.tail()}")
        return False


SERVICE_PY = """\
import http.server, os, sys, signal
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ.get("GREETING", "hello") + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("serving on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def build_package(
    dest_dir: Path,
    name: str = "hello",
    version: str = "1.0.0",
    manifest: dict[str, Any] | None = None,
    files: dict[str, str | bytes] | None = None,
    script: str = SERVICE_PY,
) -> Path:
    """A package whose entrypoint is a shell wrapper running `script` with this Python."""
    body: dict[str, Any] = {
        "name": name,
        "version": version,
        "entrypoint": "bin/run",
        "stop_timeout": 5,
    }
    body.update(manifest or {})
    # No `$(dirname "$0")`: its subshell would be a second process carrying the instance's
    # marker for a moment after the start, and tests count those (exactly one per instance).
    wrapper = (
        "#!/bin/sh\n"
        'case "$0" in */*) here="${0%/*}" ;; *) here=. ;; esac\n'
        f'exec "{sys.executable}" "$here/service.py" "$@"\n'
    )
    entries: dict[str, str | bytes] = {
        "service.json": json.dumps(body),
        "bin/run": wrapper,
        "bin/service.py": script,
    }
    entries.update(files or {})
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{name}-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, content in entries.items():
            info = zipfile.ZipInfo(entry)
            info.external_attr = (0o755 if entry.startswith("bin/") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return path


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class EventStream:
    """Collects the console event stream in a background thread."""

    def __init__(self, master_url: str, token: str) -> None:
        from websockets.sync.client import connect

        url = master_url.replace("http://", "ws://") + "/api/v1/events"
        self._cm = connect(url, additional_headers={"Authorization": f"Bearer {token}"})
        self.ws = self._cm.__enter__()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            for raw in self.ws:
                with self._lock:
                    self.events.append(json.loads(raw))

    def send(self, msg: dict[str, Any]) -> None:
        self.ws.send(json.dumps(msg))

    def topic(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e["data"] for e in self.events if e["topic"] == topic]

    def states_of(self, instance_id: str) -> list[str]:
        return [d["state"] for d in self.topic("instance") if d.get("id") == instance_id]

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def processes_with_env(key: str, value: str) -> list[int]:
    """PIDs whose environment carries key=value (how tests find the services an agent started)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(key) == value:
                found.append(proc.pid)
    return found


def iter_lines(path: Path) -> Iterator[str]:
    with open(path, errors="replace") as f:
        yield from f


def kill_services_under(root: Path) -> int:
    """Kill leftover services an agent started under `root` (they outlive agents by design)."""
    import psutil

    killed = 0
    prefix = str(root.resolve())
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if "GDOS_INSTANCE_ID" in proc.environ() and proc.cwd().startswith(prefix):
                proc.kill()
                killed += 1
    return killed


def start_masters(masters: list[Master]) -> dict[Master, str]:
    """Start several masters at once (one database, one bucket) and wait until each is healthy;
    {master: its id in the masters table}."""
    for m in masters:
        m.start_process()
    for m in masters:
        wait_for(m._healthy, 90, what=f"master {m.data_dir.name}\n{m.tail()}")
    return {m: (m.data_dir / "master-id").read_text().strip() for m in masters}
