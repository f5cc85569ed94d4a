"""Where a process's counters come from: on Linux `/proc/<pid>/stat` and `/proc/<pid>/io`,
read directly (one small read each, much cheaper than psutil's accessors); elsewhere cached
`psutil.Process` objects. Processes that vanish, turn zombie or are not ours to read give None.
"""

import os
import sys
from collections.abc import Iterable
from typing import Protocol

import psutil

# (ppid, sid, create_time, cpu_seconds, rss_bytes, threads)
Stat = tuple[int, int, float, float, int, int]


class ProcSource(Protocol):
    def pids(self) -> Iterable[int]: ...
    def stat(self, pid: int) -> Stat | None: ...  # None: gone, zombie or not readable
    def io(self, pid: int) -> tuple[int, int] | None: ...  # None: not permitted or unsupported
    def forget(self, pid: int) -> None: ...


class ProcfsSource:
    """Linux: the kernel's text files, read with one syscall each."""

    def __init__(self) -> None:
        self._hz = float(os.sysconf("SC_CLK_TCK"))
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._boot = psutil.boot_time()  # the same base psutil uses for create_time()

    def pids(self) -> Iterable[int]:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]

    @staticmethod
    def _read(path: str) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        try:
            return os.read(fd, 4096)
        except (ProcessLookupError, PermissionError):
            return None
        finally:
            os.close(fd)

    def stat(self, pid: int) -> Stat | None:
        data = self._read(f"/proc/{pid}/stat")
        if not data:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        f = data[data.rfind(b")") + 2 :].split()
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
        data = self._read(f"/proc/{pid}/io")
        if not data:
            return None
        read = write = 0
        for line in data.splitlines():
            if line.startswith(b"read_bytes:"):
                read = int(line[11:])
            elif line.startswith(b"write_bytes:"):
                write = int(line[12:])
        return read, write

    def forget(self, pid: int) -> None:
        pass


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
