"""Bringing a service's process up, and telling which process is the service.

The state changes around a start are the supervisor's; this is the work on the host: spawn the
command with its logs, and when the command only launches the service, find what it launched.
"""

import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from agent.executor import launch, locate, process, runas
from agent.executor.launch import ENV_INSTANCE_ID
from protocol.errors import GdosError

Background = Callable[[Awaitable[Any]], None]
STDERR_TAIL_BYTES = 4096  # read from the end of stderr.log when a service exits on its own
STDERR_TAIL_LINES = 3
STDERR_TAIL_CHARS = 400


class StartFailed(Exception):
    """The start did not bring the service up; the message says why, for the operator."""


@dataclass(frozen=True)
class Started:
    ident: process.Identity
    child: subprocess.Popen[bytes] | None  # None: the service is not the spawned command
    user: str | None  # the account the service runs as


async def bring_up(
    name: str,
    instance_id: str,
    plan: launch.Plan,
    account: runas.Account,
    instance_dir: Path,
    deployed: bool,
    managed_pids: set[int],
    background: Background,
) -> Started:
    """Spawn `plan`; when it has a target, wait for the process the command brings up.

    `background` runs the tasks that reap launchers, so that the caller can cancel them."""
    log_dir = instance_dir / "logs"  # made by the spawn's thread: a mkdir can wait for the disk
    data = (instance_dir / runas.DATA_DIR,) if deployed else ()
    since = time.time()
    try:
        popen = await process.spawn_logged(
            plan.argv,
            plan.cwd,
            plan.env,
            log_dir / "stdout.log",
            log_dir / "stderr.log",
            account.popen_options(),
            data,
        )
    except OSError as exc:
        raise StartFailed(f"cannot start {plan.argv[0]}: {exc.strerror or exc}") from None
    if plan.target is None:
        ident = process.identity_of(popen.pid) or process.Identity(popen.pid, time.time())
    else:
        try:
            found = await locate.find_started(
                plan.target,
                popen,
                since,
                managed_pids,
                (ENV_INSTANCE_ID, instance_id),
                launch.LOCATE_TIMEOUT,
            )
            ident = process.full_identity(found)
        except (GdosError, psutil.Error) as exc:
            _discard_launcher(popen, background)
            raise StartFailed(f"{name} did not start: {exc}") from None
    if ident.pid == popen.pid:
        return Started(ident, popen, account.user)
    background(process.reap(popen))  # the start command: done once it exits
    return Started(ident, None, process.owner(ident.pid) or account.user)


def _discard_launcher(popen: subprocess.Popen[bytes], background: Background) -> None:
    """A start command that brought up nothing usable: stop what it started."""
    ident = process.identity_of(popen.pid)
    proc = process.find(ident) if ident else None
    if proc is not None:
        process.kill_tree(process.tree(proc))
    background(process.reap(popen))


def stderr_tail(instance_dir: Path, since: float | None) -> str:
    """The last lines of the service's stderr, when it wrote any since `since` (its start):
    why a start failed, for `last_error`. Empty when there is nothing recent to show."""
    try:
        with open(instance_dir / "logs" / "stderr.log", "rb") as f:
            st = os.fstat(f.fileno())
            if since is not None and st.st_mtime < since - 1.0:
                return ""  # nothing written by this run
            f.seek(max(0, st.st_size - STDERR_TAIL_BYTES))
            data = f.read(STDERR_TAIL_BYTES)
    except OSError:
        return ""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    if st.st_size > STDERR_TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    text = " / ".join([line for line in lines if line][-STDERR_TAIL_LINES:])
    return text if len(text) <= STDERR_TAIL_CHARS else "..." + text[-STDERR_TAIL_CHARS:]
