"""Embedded mode: a master bound to 127.0.0.1 plus a local agent, started by the console.

`gdos-master --with-agent --port 127.0.0.1:<free port> --data-dir <data dir>` runs as a child
process; its data lives in the user's data directory, so a laptop is a whole installation and
everything survives a console restart. The admin password is the one the master wrote to
`<data dir>/initial-admin-password` at its first start, or one we create (0600) and name with
`--admin-password-file`: no secret is ever on a command line, where every local user sees it.
The master's exit is awaited (and reaped) as it happens: `on_exit` says how it ended, so the
console can say so and start it again on the same port. An agent left on the data directory
by a master that died is stopped. Quitting the console stops what it started (the services
keep running and are re-adopted). No Qt here: tests and scripts use it as it is.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import secrets
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from protocol.frozen import child_environ, program_command
from protocol.procs import describe_exit, stop_child, tied_to_parent, wait_exit
from protocol.worklock import holder

log = logging.getLogger(__name__)
PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name
CONSOLE_PASSWORD_FILE = "console-admin-password"  # noqa: S105 - a file name
AGENT_DIR = "agent"  # the local agent's work directory, inside the data directory


def _stop(p: psutil.Process, timeout: float) -> None:
    try:
        p.terminate()
        p.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            p.kill()
            p.wait(5)
    except psutil.Error:
        pass  # already gone


def stop_stray_agent(work_dir: Path, timeout: float = 15.0) -> int | None:
    """Stop the agent that holds `work_dir` (left by a master that died); its pid, or None.

    Only a process that is an agent on that very work directory is touched."""
    pid = holder(work_dir)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
    except psutil.Error:
        return None
    if str(work_dir) not in cmdline or not any("agent" in part for part in cmdline):
        return None
    log.warning("stopping the agent left running on %s (pid %d)", work_dir, pid)
    _stop(proc, timeout)
    return pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def master_command() -> list[str]:
    """The frozen sibling `gdos-master`, else this Python's `-m master`."""
    return program_command("gdos-master")


def admin_password(data_dir: Path) -> tuple[str, bool]:
    """(password, is_new): the master's generated one, ours from an earlier start, or a new one.

    A new one is written (0600) before the master's first start and passed with
    `--admin-password`, so the console never has to scrape the master's output.
    """
    for name in (PASSWORD_FILE, CONSOLE_PASSWORD_FILE):
        path = data_dir / name
        if path.is_file():
            text = path.read_text().strip()
            if text:
                return text, False
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    path = data_dir / CONSOLE_PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password, True


class StartOvertaken(RuntimeError):
    """`EmbeddedMaster.stop()` was called while `start()` waited: the start is abandoned."""


class EmbeddedMaster:
    """One local master (and its agent) at a time; `start()` again after it died reuses the
    port, so a console connected to it reconnects by itself."""

    def __init__(
        self, data_dir: Path, port: int | None = None, extra: list[str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.password = ""
        self.log_path = data_dir / "embedded-master.log"
        self.on_exit: Callable[[str], None] | None = None  # it ended unasked: how, in words
        self.exit_reason = ""
        self._watch: asyncio.Task[None] | None = None
        self._ready: subprocess.Popen[bytes] | None = None  # the process that answered
        self._stops = 0  # counts stop() calls: a start() they overtook gives up

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / AGENT_DIR

    def command(self) -> list[str]:
        argv = [
            *master_command(),
            "--with-agent",
            "--port",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
        ]
        if not (self.data_dir / PASSWORD_FILE).is_file():
            argv += ["--admin-password-file", str(self.data_dir / CONSOLE_PASSWORD_FILE)]
        return argv + self.extra

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start and wait until `/healthz` answers; raises RuntimeError with the log's tail, or
        StartOvertaken if `stop()` was called meanwhile (nothing is left running then)."""
        stops = self._stops
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.password, _ = admin_password(self.data_dir)
        await asyncio.to_thread(stop_stray_agent, self.agent_dir)
        if self._stops != stops:
            raise StartOvertaken("the local master was stopped while it was starting")
        # A frozen console's own bootloader variables must not reach the frozen master.
        env = {k: v for k, v in child_environ().items() if not k.startswith("GDOS_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.exit_reason = ""
        with open(self.log_path, "ab") as out:
            # On this (the GUI's, main) thread: the parent-death signal follows the thread
            # that forks, so the master ends with the console however the console ends.
            proc = self.proc = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches the console only
                preexec_fn=tied_to_parent(),
            )
        atexit.register(self.stop)  # however the console ends (a lost display too), stop it
        self._watch = asyncio.ensure_future(self._watch_exit(proc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while loop.time() < deadline:
                if self._stops != stops:  # stop() ended `proc` already
                    raise StartOvertaken("the local master was stopped while it was starting")
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the local master {describe_exit(proc.returncode)} before it answered: "
                        f"{self.last_words()} (its log: {self.log_path})"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        log.info(
                            "embedded master ready on %s (data in %s)", self.url, self.data_dir
                        )
                        self._ready = proc
                        return
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the local master did not answer within {timeout:.0f} s: {self.last_words()} "
            f"(its log: {self.log_path})"
        )

    async def _watch_exit(self, proc: subprocess.Popen[bytes]) -> None:
        code = await wait_exit(proc)  # reaped here: no zombie is left
        if self.proc is not proc:
            return  # stopped by us (or replaced): nothing to say
        self.proc = None
        atexit.unregister(self.stop)
        self.exit_reason = describe_exit(code)
        log.warning("the embedded master %s", self.exit_reason)
        # Its agent gets SIGTERM with it (Linux); elsewhere, or if it lingers, it goes now.
        await asyncio.to_thread(stop_stray_agent, self.agent_dir)
        if self.proc is not None:
            return  # started again meanwhile (the Restart button): that start is what counts
        if self.on_exit is not None and self._ready is proc:  # not a failed start: start() says
            self.on_exit(self.exit_reason)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the master, SIGKILL after `timeout`; then its local agent, should it be
        left (a master ended by a signal may not get to stop it). The services the agent
        started keep running (they are re-adopted at the next start)."""
        proc, self.proc = self.proc, None
        self._stops += 1
        atexit.unregister(self.stop)
        if proc is None:
            return
        stop_child(proc, timeout)
        stop_stray_agent(self.agent_dir, timeout)

    def last_words(self) -> str:
        """The last line of its log that says something (why it stopped, usually)."""
        lines = [ln.strip() for ln in self.tail(10).splitlines() if ln.strip()]
        return lines[-1][-300:] if lines else "nothing in its log"

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
