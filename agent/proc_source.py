"""Where a process's counters come from: on Linux `/proc/<pid>/stat` and `/proc/<pid>/io`,
read directly (one `pread` each on a descriptor kept open, much cheaper than psutil's
accessors); elsewhere cached `psutil.Process` objects. Processes that vanish, turn zombie or
are not ours to read give None.
"""

import os
import sys
from collections.abc import Iterable
from typing import Protocol

import psutil

# (ppid, sid, create_time, cpu_seconds, rss_bytes, threads)
Stat = tuple[int, int, float, float, int, int]

# Descriptors left to the rest of the agent (sockets, logs, state files) before /proc files are
# kept open; past the budget a file is opened, read and closed each time.
RESERVED_FDS = 256
# A one-thread process whose scheduler counters did not move has not run: its last stat stands,
# re-read all the same after this many reads (memory reclaim can shrink a sleeper's RSS).
STAT_EVERY = 5
# What a text's hash is compared with before the first read: CPython never hashes anything to -1.
NOTHING_SEEN = -1


class ProcSource(Protocol):
    def pids(self) -> Iterable[int]: ...
    def inspect(self, pid: int) -> Stat | None: ...  # a first look: nothing kept for it yet
    def stat(self, pid: int) -> Stat | None: ...  # None: gone, zombie or not readable
    def io(self, pid: int) -> tuple[int, int] | None: ...  # None: not permitted or unsupported
    def forget(self, pid: int) -> None: ...


class _Files:
    """What is kept of one process: its open files, and the hash of each one's last text with
    what it said (a hash rather than the text: a few hundred bytes less per process)."""

    __slots__ = (
        "io",
        "io_fd",
        "io_seen",
        "kept",
        "sched_fd",
        "sched_seen",
        "stat",
        "stat_fd",
        "stat_seen",
    )

    def __init__(self) -> None:
        self.stat_fd = self.io_fd = self.sched_fd = -1  # -1: not kept open
        self.stat_seen = self.io_seen = self.sched_seen = NOTHING_SEEN
        self.kept = 0  # reads in a row that kept the last stat
        self.stat: Stat | None = None
        self.io: tuple[int, int] | None = None


class ProcfsSource:
    """Linux: the kernel's text files. A process's files are opened once and re-read with
    `pread` (one syscall per read); the descriptor stays bound to that process, so once it
    ends (or its PID is reused) the read fails instead of reading another process. A text
    equal to the last one (by its hash) gives the very same tuple back, unparsed: callers may
    test `is`."""

    def __init__(self) -> None:
        self._hz = float(os.sysconf("SC_CLK_TCK"))
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._boot = psutil.boot_time()  # the same base psutil uses for create_time()
        self._files: dict[int, _Files] = {}
        self._room = _descriptor_room()

    def pids(self) -> Iterable[int]:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]

    def _files_of(self, pid: int) -> _Files:
        files = self._files.get(pid)
        if files is None:
            files = self._files[pid] = _Files()
        return files

    def _read_new(self, pid: int, name: str) -> tuple[bytes, int]:
        """The file's text, and its descriptor when there is room to keep it open (else -1).
        Raises FileNotFoundError when the process is gone."""
        fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
        try:
            data = os.pread(fd, 4096, 0)
        except BaseException:
            os.close(fd)
            raise
        if self._room <= 0:
            os.close(fd)
            return data, -1
        self._room -= 1
        return data, fd

    def inspect(self, pid: int) -> Stat | None:
        try:
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        try:
            return self._parse_stat(os.read(fd, 4096))
        except (ProcessLookupError, PermissionError):
            return None
        finally:
            os.close(fd)

    def stat(self, pid: int) -> Stat | None:
        files = self._files_of(pid)
        try:
            if files.sched_fd >= 0:
                # `schedstat` (the main thread's run time and run count) costs a third of `stat`
                # to produce; read first, so that a run between the two reads shows next time.
                sched = hash(os.pread(files.sched_fd, 256, 0))
                if sched == files.sched_seen and files.kept < STAT_EVERY:
                    files.kept += 1
                    return files.stat
                files.sched_seen = sched
            if files.stat_fd >= 0:
                data = os.pread(files.stat_fd, 4096, 0)
            else:
                data, files.stat_fd = self._read_new(pid, "stat")
        except (FileNotFoundError, ProcessLookupError, PermissionError):  # ended, or not ours
            return None
        files.kept = 0
        seen = hash(data)
        if seen == files.stat_seen:
            return files.stat
        files.stat_seen = seen
        st = files.stat = self._parse_stat(data)
        if st is not None and (st[5] == 1) != (files.sched_fd >= 0):
            self._watch_runs(pid, files, st[5] == 1)
        return st

    def _watch_runs(self, pid: int, files: _Files, one_thread: bool) -> None:
        """Keep `schedstat` open while the process has one thread: then it tells alone whether
        the process ran. (With more, it speaks for the main thread only.)"""
        if not one_thread:
            os.close(files.sched_fd)
            files.sched_fd = -1
            self._room += 1
        elif self._room > 0 and files.stat_fd >= 0:
            try:
                files.sched_fd = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
            except OSError:  # gone, or a kernel without scheduler statistics
                return
            self._room -= 1
        files.sched_seen = NOTHING_SEEN  # the next read is a whole one: it sets the baseline

    def _parse_stat(self, data: bytes) -> Stat | None:
        if not data:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        f = data[data.rfind(b")") + 2 :].split(None, 22)
        if f[0] == b"Z":
            return None
        hz = self._hz
        return (
            int(f[1]),
            int(f[3]),
            self._boot + int(f[19]) / hz,
            (int(f[11]) + int(f[12])) / hz,
            int(f[21]) * self._page,
            int(f[17]),
        )

    def io(self, pid: int) -> tuple[int, int] | None:
        files = self._files_of(pid)
        try:
            if files.io_fd >= 0:
                data = os.pread(files.io_fd, 4096, 0)
            else:
                data, files.io_fd = self._read_new(pid, "io")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        seen = hash(data)
        if seen == files.io_seen:
            return files.io
        files.io_seen = seen
        files.io = _parse_io(data) if data else None
        return files.io

    def forget(self, pid: int) -> None:
        files = self._files.pop(pid, None)
        if files is None:
            return
        for fd in (files.stat_fd, files.io_fd, files.sched_fd):
            if fd >= 0:
                os.close(fd)
                self._room += 1


def _parse_io(data: bytes) -> tuple[int, int]:
    f = data.split()
    if f[8:12:2] == [b"read_bytes:", b"write_bytes:"]:  # the order of every kernel since 2.6.20
        return int(f[9]), int(f[11])
    read = write = 0
    for line in data.splitlines():
        if line.startswith(b"read_bytes:"):
            read = int(line[11:])
        elif line.startswith(b"write_bytes:"):
            write = int(line[12:])
    return read, write


def _descriptor_room() -> int:
    """How many /proc descriptors to keep open: two thirds of what the soft limit leaves over a
    reserve, since each supervised process may also hold a pidfd."""
    import resource  # POSIX only: imported where Linux is known

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(0, (soft - RESERVED_FDS) * 2 // 3)


class PsutilSource:
    """Anywhere psutil runs: one cached `psutil.Process` per live PID, checked by create time."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._getsid = getattr(os, "getsid", None)

    def pids(self) -> Iterable[int]:
        return psutil.pids()

    def stat(self, pid: int) -> Stat | None:
        try:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                times = proc.cpu_times()
                return (
                    proc.ppid(),
                    self._sid(pid),
                    proc.create_time(),
                    times.user + times.system,
                    proc.memory_info().rss,
                    proc.num_threads(),
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None
        except psutil.AccessDenied:
            return None

    def inspect(self, pid: int) -> Stat | None:
        return self.stat(pid)

    def _sid(self, pid: int) -> int:
        if self._getsid is None:
            return 0
        try:
            return int(self._getsid(pid))
        except (ProcessLookupError, PermissionError):
            return 0

    def io(self, pid: int) -> tuple[int, int] | None:
        proc = self._procs.get(pid)
        if proc is None or not hasattr(proc, "io_counters"):  # macOS has no per-process IO
            return None
        try:
            c = proc.io_counters()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        return c.read_bytes, c.write_bytes

    def forget(self, pid: int) -> None:
        self._procs.pop(pid, None)


def default_source() -> ProcSource:
    if sys.platform.startswith("linux") and os.path.exists("/proc/self/stat"):
        return ProcfsSource()
    return PsutilSource()
