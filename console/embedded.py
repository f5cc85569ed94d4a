"""Embedded mode: a master bound to 127.0.0.1 plus a local agent, started by the console.

`gdos-master --with-agent --port 127.0.0.1:<free port> --data-dir <data dir>` runs as a child
process; its data lives in the user's data directory, so a laptop is a whole installation and
everything survives a console restart. The admin password is the one the master wrote to
`<data dir>/initial-admin-password` at its first start, or one we create and pass on.
Quitting the console stops what it started (the services keep running and are re-adopted).
No Qt here: tests and scripts use it as it is.
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
import sys
from pathlib import Path

import httpx
import psutil

from protocol.frozen import child_environ, program_command

log = logging.getLogger(__name__)
PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name
CONSOLE_PASSWORD_FILE = "console-admin-password"  # noqa: S105 - a file name


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the console dies, however it dies, so an
    embedded master never outlives the console that started it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, 15)


def _stop(pid: int, timeout: float, proc: psutil.Process | None = None) -> None:
    try:
        p = proc or psutil.Process(pid)
        p.terminate()
        p.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            p.kill()
            p.wait(5)
    except psutil.Error:
        pass  # already gone


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


class EmbeddedMaster:
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
            # One word with `=`: a generated password may begin with "-" (one in 64 do), and
            # argparse takes "--admin-password -x..." for a missing value and another option.
            argv.append(f"--admin-password={self.password}")
        return argv + self.extra

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start and wait until `/healthz` answers; raises RuntimeError with the log's tail."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.password, _ = admin_password(self.data_dir)
        # A frozen console's own bootloader variables must not reach the frozen master.
        env = {k: v for k, v in child_environ().items() if not k.startswith("GDOS_")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches the console only
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        atexit.register(self.stop)  # however the console ends (a lost display too), stop it
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while loop.time() < deadline:
                if not self.running:
                    raise RuntimeError(f"the embedded master exited:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        log.info(
                            "embedded master ready on %s (data in %s)", self.url, self.data_dir
                        )
                        return
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the embedded master did not answer within {timeout:.0f} s:\n{self.tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the master, SIGKILL after `timeout`; then its local agent the same way.

        The agent is the master's direct child; the services the agent started live in their own
        sessions below the agent and keep running (they are re-adopted at the next start). The
        agent is stopped here too because a master ended by a signal may not get to stop it.
        """
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        try:
            agents = psutil.Process(proc.pid).children(recursive=False)
        except psutil.Error:
            agents = []
        _stop(proc.pid, timeout)
        proc.poll()  # reap it
        for agent in agents:
            _stop(agent.pid, timeout, agent)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
