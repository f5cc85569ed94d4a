"""The agent `--with-agent` runs beside the master: started with it, started again (with
backoff) when it dies, stopped with it, and never left behind (it gets SIGTERM if the master
dies, kill -9 included). Its join token goes by file, never on the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from pathlib import Path

from master.config import Settings
from protocol.frozen import child_environ, program_command
from protocol.procs import describe_exit, stop_child, tied_to_parent, wait_exit

log = logging.getLogger("gdos.master.agent")

MIN_BACKOFF = 1.0  # seconds before the first restart
MAX_BACKOFF = 30.0
STEADY = 60.0  # an agent that ran this long starts the backoff afresh when it dies


def agent_command(settings: Settings, work_dir: Path) -> list[str]:
    """How to start the local agent: the frozen sibling binary, or this Python's `-m agent`."""
    return [
        *program_command("gdos-agent"),
        "--master",
        settings.base_url,
        "--token-file",
        str(settings.join_token_file),
        "--work-dir",
        str(work_dir),
    ]


class LocalAgent:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stopping = asyncio.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # On the event loop's thread (the main one): the parent-death signal follows the
        # thread that forks.
        self.starts += 1
        return subprocess.Popen(self.command, env=child_environ(), preexec_fn=tied_to_parent())

    async def run(self) -> None:
        """Keep the agent running until `stop()`."""
        loop = asyncio.get_running_loop()
        quick_exits = 0
        while not self._stopping.is_set():
            started = loop.time()
            self.proc = self._spawn()
            code = await wait_exit(self.proc)
            if self._stopping.is_set():
                return
            quick_exits = 0 if loop.time() - started >= STEADY else quick_exits + 1
            delay = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** max(0, quick_exits - 1))
            log.warning(
                "the local agent %s; starting it again in %.0f s", describe_exit(code), delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, SIGKILL after `timeout`; the services it started keep running."""
        self._stopping.set()
        if self.proc is not None:
            stop_child(self.proc, timeout)
