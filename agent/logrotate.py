"""Size-based rotation of service logs by copytruncate, on a timer.

Services hold their log open (stdout/stderr are files the service inherited, opened in append
mode, so services outlive the agent), so a log cannot be renamed away: when it grows past
`max_bytes` its content is copied into `<log>.1` (older backups shift to `.2`, ...; beyond
`backups` they are deleted) and the file is truncated in place; the service's next append
lands at the start. A file that grew far past the limit between two looks is cut into
`max_bytes` pieces, newest in `.1`, and what does not fit in `backups` pieces is dropped, so a
log never takes more than about `max_bytes * (backups + 1)` on disk.

The price of copytruncate: bytes written in the instant between the last copy and the
truncate can be lost. `log_paths` files are rotated only when the manifest opts in
(`"log_rotate": {"log_paths": true}`), and only make sense for files the service opens in
append mode.
"""

import asyncio
import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from agent.logs import LogFile, LogMissing, declared, open_log, read_range
from protocol.errors import GdosError
from protocol.manifest import LogRotate, Manifest

if TYPE_CHECKING:
    from agent.executor.managed import Managed
    from agent.executor.supervisor import Supervisor

log = logging.getLogger(__name__)

ROTATE_INTERVAL = float(os.environ.get("GDOS_AGENT_LOG_ROTATE_INTERVAL", "1.0"))
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
DEFAULT = LogRotate()


# (instance id, log path, log name, rule): what a pass looks at, kept as text (the LogFile is
# built again only when the log is to be rotated).
Target = tuple[str, str, str, LogRotate]
# (instance id, since) -> whether its processes may have written since then (wall time).
Active = Callable[[str, float], bool]

# How often the logs of an instance whose processes showed no change are looked at all the
# same: a small write can cost less CPU time than the clock tick the kernel counts in.
QUIET_LOOK = 10.0


class _Watched:
    __slots__ = ("looked_at", "manifest", "targets")

    def __init__(self, manifest: Manifest | None, targets: tuple[Target, ...]) -> None:
        self.manifest = manifest
        self.targets = targets
        self.looked_at = 0.0


class Targets:
    """The logs to watch, per instance, rebuilt only when an instance or its manifest changes
    (a pass is then one `stat` per log). With `active`, an instance whose processes did not run
    since its last look is passed over: its logs cannot have grown."""

    def __init__(self) -> None:
        self._cache: dict[str, _Watched] = {}

    def due(
        self, supervisor: "Supervisor", now: float, active: Active | None = None
    ) -> Iterator[Target]:
        current = supervisor.instances
        for gone in self._cache.keys() - current.keys():
            del self._cache[gone]
        for instance_id, m in list(current.items()):
            w = self._cache.get(instance_id)
            if w is None or w.manifest is not m.manifest:
                w = self._cache[instance_id] = _Watched(m.manifest, _build(supervisor, m))
            if (
                active is not None
                and now - w.looked_at < QUIET_LOOK
                and not active(instance_id, w.looked_at)
            ):
                continue
            w.looked_at = now
            yield from w.targets


def _build(supervisor: "Supervisor", m: "Managed") -> tuple[Target, ...]:
    return tuple((m.id, str(entry.path), entry.name, rule) for entry, rule in _logs(supervisor, m))


def _logs(supervisor: "Supervisor", m: "Managed") -> list[tuple[LogFile, LogRotate]]:
    rule = m.manifest.log_rotate if m.manifest else DEFAULT
    if rule.max_bytes <= 0:
        return []
    inst_dir, app = supervisor.instance_dir(m.id), supervisor.app_dir(m)
    return [
        (entry, rule)
        for entry in declared(inst_dir, app, m.manifest, supervisor.log_roots)
        if entry.own or rule.log_paths
    ]


def entry_of(supervisor: "Supervisor", instance_id: str, name: str) -> LogFile | None:
    """The instance's log of that name as it is declared now (None once it is gone)."""
    m = supervisor.instances.get(instance_id)
    if m is None:
        return None
    return next((entry for entry, _ in _logs(supervisor, m) if entry.name == name), None)


def needs_rotation(entry: LogFile | str, rule: LogRotate) -> bool:
    try:
        st = os.stat(entry if isinstance(entry, str) else entry.path, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > rule.max_bytes


def _write_copy(src_fd: int, start: int, end: int, dest: str) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY, 0o640)
    try:
        pos = start
        while pos < end:
            data = read_range(src_fd, pos, min(end - pos, 1 << 20))
            if not data:
                break
            os.write(fd, data)
            pos += len(data)
    finally:
        os.close(fd)


def rotate(entry: LogFile, rule: LogRotate) -> int:
    """Copy, then truncate; returns how many backup files were written."""
    fd = open_log(entry, write=True)
    try:
        size = os.fstat(fd).st_size
        if size <= rule.max_bytes:
            return 0
        base = str(entry.path)
        pieces = min(rule.backups, math.ceil(size / rule.max_bytes))
        # Make room: .i -> .i+pieces, and what would land beyond `backups` goes.
        for i in range(rule.backups, 0, -1):
            old = f"{base}.{i}"
            if i + pieces > rule.backups:
                _unlink(old)
            elif os.path.lexists(old):
                os.replace(old, f"{base}.{i + pieces}")
        end = size
        for i in range(1, pieces + 1):
            start = max(0, end - rule.max_bytes)
            _write_copy(fd, start, end, f"{base}.{i}")
            end = start
        # What the service appended while we copied is newer than `.1`: keep it in the file.
        grown = os.fstat(fd).st_size
        extra = read_range(fd, size, min(grown - size, rule.max_bytes)) if grown > size else b""
        os.ftruncate(fd, 0)
        if extra:
            os.write(fd, extra)  # O_APPEND: lands at the (new) end
        return pieces
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def rotate_forever(
    supervisor: "Supervisor", interval: float = ROTATE_INTERVAL, active: Active | None = None
) -> None:
    warned: set[tuple[str, str]] = set()
    watched = Targets()
    while True:
        await asyncio.sleep(interval)
        for instance_id, path, name, rule in list(watched.due(supervisor, time.time(), active)):
            if not needs_rotation(path, rule):
                continue
            entry = entry_of(supervisor, instance_id, name)
            if entry is None:
                continue
            try:
                await asyncio.to_thread(rotate, entry, rule)
            except LogMissing:
                continue
            except (GdosError, OSError) as exc:
                key = (str(entry.path), str(exc))
                if key not in warned:  # once per file and reason, not every second
                    warned.add(key)
                    log.warning("cannot rotate %s: %s", entry.path, exc)
