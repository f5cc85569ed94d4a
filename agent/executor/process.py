"""Processes: spawn in their own session, know them by identity, notice exits, stop whole trees.

Identity is (pid, create_time[, cmdline]): a PID that was reused by another program never
matches, so it is never signalled. The command line is recorded for processes found rather
than spawned (adopted, or `pid_strategy: match`); our own children are known from the fork.
Exits are events (`pidfd_open` + the loop's reader on Linux), for our own children and for
processes we re-adopted alike; elsewhere a short poll stands in.
"""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from agent.executor import protected

log = logging.getLogger(__name__)

IS_WINDOWS = os.name == "nt"
CREATE_TIME_TOLERANCE = 0.05  # seconds; psutil rounds create_time


@dataclass(frozen=True)
class Identity:
    pid: int
    create_time: float
    cmdline: tuple[str, ...] | None = None

    def matches(self, proc: psutil.Process) -> bool:
        try:
            if abs(proc.create_time() - self.create_time) > CREATE_TIME_TOLERANCE:
                return False
            if self.cmdline is not None:
                with contextlib.suppress(psutil.AccessDenied):
                    return tuple(proc.cmdline()) == self.cmdline
            return True
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False


def find(identity: Identity, child: subprocess.Popen[bytes] | None = None) -> psutil.Process | None:
    """The live process with this identity, or None (gone, or its PID now belongs to another).

    `child`: the agent's own child, when the process is one. Until the agent reaps it, its PID
    names nothing else, and whether it has ended is a wait call (which reaps it), not a read."""
    if child is not None and child.pid == identity.pid and child.returncode is None:
        if child.poll() is not None:
            return None
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(identity.pid)
        return None
    try:
        proc = psutil.Process(identity.pid)
    except psutil.NoSuchProcess:
        return None
    if not identity.matches(proc):
        return None
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    return proc


def identity_of(pid: int) -> Identity | None:
    try:
        return Identity(pid, psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def full_identity(proc: psutil.Process) -> Identity:
    """pid + create time + command line, for a process found rather than spawned."""
    with proc.oneshot():
        return Identity(proc.pid, proc.create_time(), tuple(proc.cmdline()))


# Windows process-creation flags (the subprocess module defines them only on Windows).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_BREAKAWAY_FROM_JOB = 0x01000000
CREATE_NO_WINDOW = 0x08000000


def popen_options(windows: bool) -> list[dict[str, object]]:
    """How to detach a service from the agent, best first.

    POSIX: its own session, so signals to the agent's group and the agent's end leave it alone.
    Windows: its own process group, no console window, and out of the agent's Job Object when
    the job allows it (Task Scheduler runs tasks in a job; ending the task would otherwise end
    the services too). A job that forbids breakaway refuses the first form: then the second.
    """
    if windows:
        base = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        return [{"creationflags": base | CREATE_BREAKAWAY_FROM_JOB}, {"creationflags": base}]
    return [{"start_new_session": True}]


def spawn(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    run_as: dict[str, Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a service from an argument list (never a shell string), detached from the agent;
    `run_as` holds Popen's user/group/extra_groups for another account (runas.Account)."""
    options = popen_options(IS_WINDOWS)
    for i, kwargs in enumerate(options):
        kwargs = {**kwargs, **(run_as or {})}
        try:
            return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                close_fds=True,
                **kwargs,
            )
        except PermissionError:
            if i == len(options) - 1:
                raise
            log.debug("cannot start %s outside the agent's job; starting it inside", argv[0])
    raise AssertionError("unreachable")


# Popen returns only once the child has exec'd, and on a busy host that means waiting for the
# child to be scheduled: spawning from a few threads overlaps those waits across a batch. The
# threads start on demand, so an agent that starts nothing does not pay for them.
_spawner = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gdos-spawn")


async def spawn_logged(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdout: Path,
    stderr: Path,
    run_as: dict[str, Any] | None = None,
    folders: tuple[Path, ...] = (),
) -> subprocess.Popen[bytes]:
    """`spawn` with stdout and stderr appended to files, off the event loop; `folders` are
    made first if missing. The log files are opened without following a symlink."""

    def run() -> subprocess.Popen[bytes]:
        for folder in {stdout.parent, stderr.parent, *folders}:
            folder.mkdir(parents=True, exist_ok=True)
        with _append(stdout) as out, _append(stderr) as err:
            return spawn(argv, cwd, env, out, err, run_as)

    return await asyncio.get_running_loop().run_in_executor(_spawner, run)


def _append(path: Path) -> IO[bytes]:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags | getattr(os, "O_BINARY", 0), 0o640), "ab")


async def wait_exit(identity: Identity, popen: subprocess.Popen[bytes] | None = None) -> int | None:
    """Wait until the process ends; returns its exit code when it is our child, else None."""
    if popen is None and find(identity) is None:
        return None
    fd = _pidfd(identity.pid)
    if fd is not None:
        try:
            # The pidfd refers to whatever holds the PID now: check it is still ours.
            if popen is not None or find(identity) is not None:
                loop = asyncio.get_running_loop()
                ready: asyncio.Future[None] = loop.create_future()

                def on_exit() -> None:
                    if not ready.done():
                        ready.set_result(None)

                loop.add_reader(fd, on_exit)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
        finally:
            os.close(fd)
    else:
        while (popen.poll() is None) if popen is not None else find(identity) is not None:
            await asyncio.sleep(0.1)
    if popen is None:
        return None
    code = popen.poll()  # it has ended: reaping the zombie does not block (no thread hop)
    return code if code is not None else await asyncio.to_thread(popen.wait)


async def reap(popen: subprocess.Popen[bytes]) -> None:
    """Wait for a child the agent does not watch (a start command), so it leaves no zombie."""
    ident = identity_of(popen.pid) or Identity(popen.pid, 0.0)
    await wait_exit(ident, popen)


def owner(pid: int) -> str | None:
    """The account a process runs as (None when it cannot be told)."""
    try:
        return psutil.Process(pid).username()
    except (psutil.Error, KeyError):
        return None


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:  # gone already, or the kernel lacks pidfd
        return None


_CHILDREN_TTL = 0.1
_children_cache: tuple[float, dict[int, list[int]]] | None = None


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids from one pass over the process table, shared by the calls of
    the next 0.1 s (used where /proc/<pid>/task/<tid>/children is not available)."""
    global _children_cache
    now = time.monotonic()
    if _children_cache is not None and now - _children_cache[0] < _CHILDREN_TTL:
        return _children_cache[1]
    kids: dict[int, list[int]] = {}
    for p in psutil.process_iter(["ppid"]):
        kids.setdefault(p.info["ppid"], []).append(p.pid)
    _children_cache = (now, kids)
    return kids


def _direct_children(pid: int) -> list[int] | None:
    """Linux: a process's children straight from the kernel, without scanning every process
    (what psutil does); None where the kernel does not offer it."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return [] if os.path.isdir("/proc/self/task") else None
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            return None  # kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue  # the thread ended meanwhile
    return out


def tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process and all its descendants, parents before their children. `proc` was found a
    moment ago (`find`, or `psutil.Process`): it is not checked again."""
    scanned: dict[int, list[int]] | None = None
    out, queue, seen = [proc], [proc.pid], {proc.pid}
    while queue:
        pid = queue.pop(0)
        kids = _direct_children(pid)
        if kids is None:
            scanned = scanned if scanned is not None else _children_map()
            kids = scanned.get(pid, [])
        for child in kids:
            if child in seen:
                continue
            seen.add(child)
            with contextlib.suppress(psutil.NoSuchProcess):
                out.append(psutil.Process(child))
                queue.append(child)
    return out


def terminate_tree(procs: list[psutil.Process], fresh: bool = False) -> None:
    """Ask a tree to stop: SIGTERM to its group and each member; `taskkill /T` on Windows.
    `fresh`: see `signal_trees`."""
    terminate_trees([procs], fresh)


def terminate_trees(trees: Sequence[list[psutil.Process]], fresh: bool = False) -> None:
    """`terminate_tree` for several trees, back to back."""
    if IS_WINDOWS:
        for procs in trees:
            _taskkill(procs, force=False)
    else:
        signal_trees(trees, signal.SIGTERM, fresh)


def kill_tree(procs: list[psutil.Process]) -> None:
    """Force a tree to stop: SIGKILL; `taskkill /T /F`, then TerminateProcess each, on Windows."""
    if IS_WINDOWS:
        _taskkill(procs, force=True)
        for proc in alive(procs):  # orphans whose parent died are no longer in taskkill's tree
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.kill()
    else:
        signal_tree(procs, signal.SIGKILL)


def signal_tree(procs: list[psutil.Process], sig: int, fresh: bool = False) -> None:
    """POSIX: `signal_trees` for one tree."""
    signal_trees([procs], sig, fresh)


def signal_trees(trees: Sequence[list[psutil.Process]], sig: int, fresh: bool = False) -> None:
    """POSIX: signal every process of each tree; psutil refuses a PID reused since a tree was
    taken. A leader's group is signalled at once only when no protected process is in it (the
    protected set and its groups are read once for all the trees). `fresh`: the trees were read
    a moment ago, with no wait since, so a leader's PID is not checked again."""
    barred = protected.protected_pids()
    barred_groups: set[int] | None = None  # read at the first group signal
    for tree in trees:
        procs = [p for p in tree if p.pid not in barred]
        leader = procs[0] if procs else None
        group = None
        if leader is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
                pgid = os.getpgid(leader.pid)
                if pgid == leader.pid and barred_groups is None:
                    barred_groups = {g for g in map(_pgid, barred) if g is not None}
                # No protected process may be in the group (a group signal would reach it).
                shared = barred_groups is None or pgid in barred_groups
                if pgid == leader.pid and not shared and (fresh or leader.is_running()):
                    os.killpg(leader.pid, sig)  # its whole session's group at once
                    group = leader.pid
        for proc in procs:
            if group is not None and proc is leader:
                continue  # it leads the group signalled
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                if group is not None and os.getpgid(proc.pid) == group:
                    continue  # the group signal reached it already
                proc.send_signal(sig)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def taskkill_command(pids: int | Sequence[int], force: bool) -> list[str]:
    """Windows: `taskkill /T` stops each tree (one /PID per process); `/F` forces it."""
    numbers = [pids] if isinstance(pids, int) else list(pids)
    return [
        "taskkill",
        *[a for p in numbers for a in ("/PID", str(p))],
        "/T",
        *(["/F"] if force else []),
    ]


def run_quiet(argv: list[str]) -> int:
    """The OS seam for commands the agent issues itself (tests replace it to record them)."""
    try:
        return subprocess.run(argv, capture_output=True, check=False).returncode
    except OSError as exc:
        log.warning("cannot run %s: %s", argv[0], exc)
        return -1


def _taskkill(procs: list[psutil.Process], force: bool) -> None:
    pids = [p.pid for p in alive(procs)]
    if pids:
        run_quiet(taskkill_command(pids, force))


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


async def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` for the processes to end; returns those still alive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    remaining = alive(procs)
    while remaining and loop.time() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
        remaining = alive(remaining)
    return remaining


def executable(path: Path) -> Path:
    """On Windows `bin/app` means `bin/app.exe` when only that exists."""
    if IS_WINDOWS and not path.exists() and path.with_name(path.name + ".exe").exists():
        return path.with_name(path.name + ".exe")
    return path
