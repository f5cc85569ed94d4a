"""Finding a process GDOS did not spawn itself: by PID file, by name, or by a command-line pattern.

Used to adopt an external process, and to find the real process of a service whose start
command exits (`pid_strategy: match`, or an adopted service's `start_command`). Matching is
strict: several candidates are an error listing them (never a guess), and a PID file whose
process started after the file was written names a reused PID (never adopted, never signalled).
"""

import asyncio
import contextlib
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from agent.executor import protected
from protocol import pattern
from protocol.errors import ErrorCode, GdosError

# A PID file is written by (or just after starting) its process: a process created more than
# this long after the file's last write cannot be the one the file names. (psutil's create
# times derive from a boot time in whole seconds, so they may read up to 1 s early.)
PID_FILE_SLACK = 2.0
# create_time has clock-tick resolution; a process found after a launch may predate the launch
# timestamp by that much.
LAUNCH_SLACK = 0.05
POLL = 0.05
# A start command that matches and is still running after this long is taken to be the
# service itself (a start command that does not daemonize).
LAUNCHER_SETTLE = 1.0
MAX_LISTED = 20
PID_FILE_BYTES = 64  # a PID file holds a number; nothing past this is read


@dataclass(frozen=True)
class Matcher:
    """What the process looks like: its name, or a pattern (RE2: linear time, see
    protocol.pattern) searched in its joined command line."""

    process_name: str | None = None
    cmdline_pattern: str | None = None

    def __post_init__(self) -> None:
        assert self.process_name or self.cmdline_pattern

    @property
    def description(self) -> str:
        if self.process_name:
            return f"named {self.process_name!r}"
        return f"whose command line matches {self.cmdline_pattern!r}"

    def matches(self, name: str, cmdline: list[str]) -> bool:
        if self.process_name:
            first = os.path.basename(cmdline[0]) if cmdline else ""
            return self.process_name in (name, first)
        assert self.cmdline_pattern is not None
        try:
            return pattern.search(self.cmdline_pattern, " ".join(cmdline))
        except pattern.PatternError as exc:
            raise GdosError(
                ErrorCode.VALIDATION_FAILED, f"cmdline pattern {self.cmdline_pattern!r}: {exc}"
            ) from None


def describe(proc: psutil.Process) -> dict[str, Any]:
    """A candidate as the error details list it."""
    with contextlib.suppress(psutil.Error), proc.oneshot():
        return {
            "pid": proc.pid,
            "name": proc.name(),
            "cmdline": " ".join(proc.cmdline())[:500],
            "create_time": proc.create_time(),
        }
    return {"pid": proc.pid, "name": "?", "cmdline": "", "create_time": None}


def refuse_protected(proc: psutil.Process, how: str) -> None:
    """PID 1, kernel threads, this agent and its ancestors are never adopted (stopping an
    adopted process signals its whole tree)."""
    why = protected.why_protected(proc)
    if why is not None:
        raise GdosError(
            ErrorCode.FORBIDDEN,
            f"refusing to adopt process {proc.pid} ({how}): {why}",
            {"pid": proc.pid},
        )


def scan(
    matcher: Matcher,
    exclude: set[int],
    since: float | None = None,
    refused: list[psutil.Process] | None = None,
) -> list[psutil.Process]:
    """Live processes that match, oldest first; `since` keeps only those created after it.

    PID 1, kernel threads, this agent and its ancestors are never candidates (the agent's
    command line contains anything); those that match are added to `refused` if given."""
    skip = protected.protected_pids()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "cmdline", "create_time", "status", "ppid"]):
        info = proc.info
        if proc.pid in exclude or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if since is not None and (info["create_time"] or 0) < since - LAUNCH_SLACK:
            continue
        barred = proc.pid in skip or protected.is_kernel_thread(proc.pid, info["ppid"])
        if barred and refused is None:
            continue
        if matcher.matches(info["name"] or "", info["cmdline"] or []):
            (refused if barred and refused is not None else found).append(proc)
    found.sort(key=lambda p: p.info["create_time"] or 0)
    return found


def only_one(found: list[psutil.Process], what: str) -> psutil.Process:
    if not found:
        raise GdosError(ErrorCode.PROCESS_NOT_FOUND, f"no process {what} is running on this node")
    if len(found) > 1:
        listed = [describe(p) for p in found[:MAX_LISTED]]
        raise GdosError(
            ErrorCode.AMBIGUOUS_MATCH,
            f"{len(found)} processes {what} are running; refusing to guess which one is meant "
            "(use a PID file or a more specific command-line pattern)",
            {"candidates": listed, "count": len(found)},
        )
    return found[0]


def read_pid_file(path: Path) -> tuple[int, float]:
    """The PID a file names and when the file was last written (only its first bytes are read,
    and only from a regular file: a FIFO or a device named as a PID file must not hang)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise GdosError(
                    ErrorCode.PROCESS_NOT_FOUND, f"PID file {path} is not a regular file"
                )
            text = os.read(fd, PID_FILE_BYTES).decode(errors="replace").strip()
            mtime = st.st_mtime
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise GdosError(ErrorCode.PROCESS_NOT_FOUND, f"PID file {path} does not exist") from None
    except OSError as exc:
        raise GdosError(
            ErrorCode.PROCESS_NOT_FOUND, f"PID file {path} is unreadable: {exc.strerror or exc}"
        ) from None
    first = text.split()[0] if text else ""
    if not first.isdigit() or int(first) <= 0:
        # Never quote the file: the path is the caller's, the content may be anything readable.
        raise GdosError(ErrorCode.PROCESS_NOT_FOUND, f"PID file {path} does not hold a PID")
    return int(first), mtime


def from_pid_file(path: Path, matcher: Matcher | None = None) -> psutil.Process:
    """The process a PID file names, refused when the PID now belongs to another program."""
    pid, written = read_pid_file(path)
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        status = proc.status()
    except psutil.NoSuchProcess:
        raise GdosError(
            ErrorCode.PROCESS_NOT_FOUND,
            f"PID file {path} names PID {pid}, which is not running",
            {"pid": pid},
        ) from None
    if status == psutil.STATUS_ZOMBIE:
        raise GdosError(
            ErrorCode.PROCESS_NOT_FOUND, f"PID {pid} from {path} has exited", {"pid": pid}
        )
    refuse_protected(proc, f"named by PID file {path}")
    seen = describe(proc)
    if created > written + PID_FILE_SLACK:
        raise GdosError(
            ErrorCode.PROCESS_IDENTITY,
            f"PID file {path} is older than process {pid} ({seen['name']}): that PID was "
            "reused by another program since the file was written; refusing it",
            {"candidate": seen, "pid_file_written": written, "process_started": created},
        )
    if matcher is not None and not matcher.matches(seen["name"], proc.cmdline()):
        raise GdosError(
            ErrorCode.PROCESS_IDENTITY,
            f"PID {pid} from {path} is {seen['name']} ({seen['cmdline'][:120]}), not a process "
            f"{matcher.description}; refusing it",
            {"candidate": seen},
        )
    return proc


def has_marker(proc: psutil.Process, key: str, value: str) -> bool:
    with contextlib.suppress(psutil.Error, OSError):
        return proc.environ().get(key) == value
    return False


@dataclass(frozen=True)
class Target:
    """How to recognise the process a start command brings up."""

    matcher: Matcher | None = None
    pid_file: Path | None = None

    @property
    def description(self) -> str:
        if self.pid_file is not None:
            return f"named by PID file {self.pid_file}"
        assert self.matcher is not None
        return self.matcher.description


async def find_adoptable(target: Target, managed: set[int]) -> psutil.Process:
    """The one process an adopt request names (never one of `managed`, never a protected one)."""
    if target.pid_file is not None:
        return from_pid_file(target.pid_file, target.matcher)
    assert target.matcher is not None
    barred: list[psutil.Process] = []
    found = await asyncio.to_thread(scan, target.matcher, managed, None, barred)
    if not found and barred:
        refuse_protected(barred[0], target.matcher.description)
    return only_one(found, target.matcher.description)


async def find_started(
    target: Target,
    launcher: subprocess.Popen[bytes],
    since: float,
    exclude: set[int],
    marker: tuple[str, str],
    timeout: float,
) -> psutil.Process:
    """After running a start command at `since` (wall clock), wait for the process it brings up.

    Only processes created after the launch count, so an older unrelated process that happens
    to match is never taken. When several match, those carrying this instance's environment
    marker (inherited from the start command) win; the launcher itself counts only when it is
    the service (a start command that does not exit)."""
    deadline = time.monotonic() + timeout
    # Compare create times with the launcher's own, not with the wall clock: psutil's create
    # times can be off from time.time() by up to a second.
    try:
        born = psutil.Process(launcher.pid).create_time()
    except psutil.Error:
        born = since - 1.0
    while True:
        code = launcher.poll()
        if code not in (None, 0):
            raise GdosError(
                ErrorCode.START_FAILED, f"the start command exited with code {code}", {"code": code}
            )
        found = _started(target, since, born, exclude, launcher.pid, marker)
        settled = time.monotonic() > deadline - timeout + LAUNCHER_SETTLE
        if found is not None and (found.pid != launcher.pid or settled):
            return found
        if time.monotonic() > deadline:
            raise GdosError(
                ErrorCode.START_FAILED,
                f"no new process {target.description} appeared within {timeout:g} s of the "
                "start command",
            )
        await asyncio.sleep(POLL)


def _started(
    target: Target,
    since: float,
    born: float,
    exclude: set[int],
    launcher: int,
    marker: tuple[str, str],
) -> psutil.Process | None:
    if target.pid_file is not None:
        try:
            pid, written = read_pid_file(target.pid_file)
        except GdosError:
            return None  # not written yet
        if written < since - LAUNCH_SLACK:
            return None  # still the old file
        try:
            proc = from_pid_file(target.pid_file, target.matcher)
        except GdosError as exc:
            if exc.code == ErrorCode.PROCESS_NOT_FOUND:
                return None
            raise
        return proc if proc.pid == pid and proc.pid not in exclude else None
    assert target.matcher is not None
    found = scan(target.matcher, exclude, born)
    if len(found) > 1:
        found = [p for p in found if p.pid != launcher] or found
    if len(found) > 1:
        found = [p for p in found if has_marker(p, *marker)] or found
    if not found:
        return None
    return only_one(found, target.matcher.description + " started by the start command")
