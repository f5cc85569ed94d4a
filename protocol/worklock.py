"""One agent per work directory: an exclusive lock on `<work dir>/agent.lock`, held for life.

Two agents on one work directory would both adopt, restart and rotate the same services. The
lock is the operating system's (flock on POSIX, a byte-range lock on Windows), so it goes away
with the process however it ends, and the file says which pid holds it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "agent.lock"


class WorkDirBusy(Exception):
    """Another agent holds the work directory."""

    def __init__(self, work_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"another agent ({who}) already runs on {work_dir}; only one may")
        self.pid = pid


def holder(work_dir: Path) -> int | None:
    """The pid written by the agent holding (or last holding) the lock, if any."""
    try:
        return int((work_dir / LOCK_FILE).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def acquire(work_dir: Path) -> IO[str]:
    """Take the lock (raises WorkDirBusy); keep the returned file open while the agent runs."""
    f = open(work_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process's life
    try:
        _lock(f)
    except OSError:
        f.close()
        raise WorkDirBusy(work_dir, holder(work_dir)) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def release(f: IO[str]) -> None:
    with contextlib.suppress(OSError):
        f.seek(0)
        f.truncate()
    f.close()


if os.name == "nt":
    import msvcrt

    def _lock(f: IO[str]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]

else:
    import fcntl

    def _lock(f: IO[str]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
