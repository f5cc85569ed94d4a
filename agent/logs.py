"""Service logs on the agent: which files an instance declares, reading them safely, following them.

Only declared logs are readable: `stdout` and `stderr` (`<work>/<instance>/logs/*.log`) and the
manifest's `log_paths` (relative ones inside the instance's current release, absolute ones
exactly as declared, and only under the agent's `--log-roots` or the instance's own folder: a
declaration cannot reach /etc/shadow). Paths are resolved on every read: the file is opened
without following a symlink, must be a regular file, and must be the file that the declared path
resolves to inside the instance directory (or inside its log root), so a log swapped for a
symlink (or a directory on its way swapped for one) to somewhere else is refused instead of read.
"""

import asyncio
import base64
import codecs
import contextlib
import errno
import logging
import os
import posixpath
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.executor.releases import RELEASES, SHARED
from agent.flags import DEFAULT_LOG_ROOTS
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest, is_absolute_path, shared_path_name
from protocol.messages import FollowLog, ListLogs, LogChunk, TailLog

if TYPE_CHECKING:
    from agent.executor.supervisor import Supervisor

log = logging.getLogger(__name__)

MAX_TAIL = 1 << 20  # bytes in one tail reply (the agent channel carries it as base64)
CHUNK = 64 << 10  # bytes in one log_chunk message
FOLLOW_INTERVAL = 0.25  # seconds between looks at a followed file
MAX_PER_TICK = 256 << 10  # a follower never falls further behind than this per look
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted as a log must not hang a read
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


class LogMissing(GdosError):
    """A declared log that does not exist (yet): not an error for listing or rotation."""


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:  # different drives
        return False


def allowed_root(raw: str, roots: tuple[Path, ...], instance_dir: Path) -> Path | None:
    """The allowed folder an absolute log path lies in (lexically: `..` is resolved first)."""
    path = os.path.normpath(raw)
    for root in (*roots, instance_dir):
        if _inside(path, os.path.normpath(root)):
            return root
    return None


def check_log_roots(log_paths: dict[str, str], roots: tuple[Path, ...], instance_dir: Path) -> None:
    """Refuse (at deploy and at adopt) an absolute log outside the allowed folders."""
    for name, raw in log_paths.items():
        if is_absolute_path(raw) and allowed_root(raw, roots, instance_dir) is None:
            where = ", ".join(str(r) for r in roots) or "none"
            raise GdosError(
                ErrorCode.FORBIDDEN,
                f"log {name!r} at {raw} is outside the folders this agent serves logs from "
                f"(--log-roots: {where}; and the instance's own folder): start the agent with "
                "--log-roots naming its folder to allow it",
                {"name": name, "log_roots": [str(r) for r in roots]},
            )


@dataclass(frozen=True)
class LogFile:
    name: str
    path: Path  # absolute, as declared
    # The folder it must resolve inside: the instance's, or the log root of an absolute path;
    # None for an absolute path outside every allowed folder (never opened).
    root: Path | None
    own: bool  # stdout/stderr, written through the agent's own file handles

    def refused(self, why: str) -> GdosError:
        return GdosError(
            ErrorCode.FORBIDDEN, f"log {self.name!r} is refused: {why}", {"name": self.name}
        )


def declared(
    instance_dir: Path,
    app: Path | None,
    manifest: Manifest | None,
    log_roots: tuple[Path, ...] = DEFAULT_LOG_ROOTS,
) -> list[LogFile]:
    """stdout, stderr, then the manifest's log_paths, in that order. A relative one lies in the
    current release's folder `app`, or in `<instance>/shared` when a shared path holds it (its
    real place: the link to it in the release would read as a swapped folder)."""
    out = [
        LogFile(name, instance_dir / "logs" / f"{name}.log", instance_dir, True)
        for name in ("stdout", "stderr")
    ]
    shared = [shared_path_name(p)[0] for p in (manifest.shared_paths if manifest else ())]
    for name, raw in (manifest.log_paths if manifest else {}).items():
        if is_absolute_path(raw):
            root = allowed_root(raw, log_roots, instance_dir)
            out.append(LogFile(name, Path(raw), root, False))
            continue
        rel = posixpath.normpath(raw.replace("\\", "/"))
        if any(rel == s or rel.startswith(s + "/") for s in shared):
            path = instance_dir / SHARED / rel
        else:
            path = (app if app is not None else instance_dir / RELEASES) / rel
        out.append(LogFile(name, path, instance_dir, False))
    return out


def find(logs: list[LogFile], name: str) -> LogFile:
    for entry in logs:
        if entry.name == name:
            return entry
    names = ", ".join(repr(e.name) for e in logs)
    raise GdosError(
        ErrorCode.NOT_FOUND,
        f"this instance has no log named {name!r}; it declares {names}",
        {"name": name, "declared": [e.name for e in logs]},
    )


def open_log(entry: LogFile, write: bool = False) -> int:
    """Open a declared log (read-only, or read-write in append mode for rotation), checked."""
    if entry.root is None:  # an absolute declaration outside every allowed folder
        raise entry.refused(
            "it is outside the folders this agent serves logs from (see the agent's --log-roots)"
        )
    root = os.path.realpath(entry.root)
    expected = os.path.normpath(os.path.join(root, os.path.relpath(entry.path, entry.root)))
    if os.path.commonpath([root, expected]) != root:
        raise entry.refused("its path leaves the instance's directory")
    flags = (os.O_RDWR | os.O_APPEND) if write else os.O_RDONLY
    try:
        fd = os.open(entry.path, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY)
    except FileNotFoundError:
        raise LogMissing(
            ErrorCode.NOT_FOUND, f"log {entry.name!r} does not exist (yet)", {"name": entry.name}
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise entry.refused("it is a symbolic link") from None
        raise entry.refused(exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise entry.refused("it is not a regular file")
        resolved = os.path.realpath(entry.path)
        if resolved != expected:
            raise entry.refused("a directory on its path is a symbolic link")
        # The file opened must still be the one at the resolved path (no swap in between).
        now = os.stat(resolved)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise entry.refused("it was replaced while being opened")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_range(fd: int, start: int, length: int) -> bytes:
    parts = []
    while length > 0:
        data = os.pread(fd, min(length, 1 << 20), start)
        if not data:
            break
        parts.append(data)
        start += len(data)
        length -= len(data)
    return b"".join(parts)


def tail(entry: LogFile, tail_bytes: int) -> tuple[bytes, int, int]:
    """(the last `tail_bytes` bytes, the file's size, the offset they start at)."""
    fd = open_log(entry)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - min(tail_bytes, MAX_TAIL))
        return read_range(fd, start, size - start), size, start
    finally:
        os.close(fd)


def describe(entry: LogFile) -> dict[str, Any]:
    info: dict[str, Any] = {"name": entry.name, "path": str(entry.path), "size": 0}
    try:
        fd = open_log(entry)
    except LogMissing:
        info["exists"] = False
        return info
    except GdosError as exc:
        info["exists"] = os.path.lexists(entry.path)
        info["error"] = exc.message
        return info
    try:
        info["size"] = os.fstat(fd).st_size
    finally:
        os.close(fd)
    info["exists"] = True
    return info


Send = Callable[[LogChunk], Awaitable[None]]


class AgentLogs:
    """Answers the master's log requests for the instances the supervisor runs."""

    def __init__(self, supervisor: "Supervisor", send: Send) -> None:
        self.supervisor = supervisor
        self.send = send
        self.followers: dict[tuple[str, str], asyncio.Task[None]] = {}

    def logs_of(self, instance_id: str) -> list[LogFile]:
        m = self.supervisor.get(instance_id)
        sup = self.supervisor
        return declared(sup.instance_dir(instance_id), sup.app_dir(m), m.manifest, sup.log_roots)

    async def handle(self, msg: ListLogs | TailLog | FollowLog) -> dict[str, Any]:
        logs = self.logs_of(msg.instance_id)
        if isinstance(msg, ListLogs):
            return {"logs": [describe(e) for e in logs]}
        entry = find(logs, msg.name)
        if isinstance(msg, TailLog):
            try:
                data, size, start = await asyncio.to_thread(tail, entry, msg.tail_bytes)
            except LogMissing:
                data, size, start = b"", 0, 0
            return {"data": base64.b64encode(data).decode(), "size": size, "offset": start}
        key = (msg.instance_id, msg.name)
        if not msg.follow:
            task = self.followers.pop(key, None)
            if task is not None:
                task.cancel()
            return {"following": False}
        if key not in self.followers:
            start = 0
            with contextlib.suppress(LogMissing):
                fd = open_log(entry)  # refuse now rather than in the follower
                try:
                    start = os.fstat(fd).st_size  # follow from now on
                finally:
                    os.close(fd)
            task = asyncio.create_task(self._follow(msg.instance_id, entry, start))
            self.followers[key] = task
            task.add_done_callback(lambda t, k=key: self._forget(k, t))  # type: ignore[misc]
        return {"following": True}

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self.followers.get(key) is task:
            del self.followers[key]

    def stop_all(self) -> None:
        """The connection to the master is gone: it asks again after reconnecting."""
        for task in self.followers.values():
            task.cancel()
        self.followers.clear()

    async def _follow(self, instance_id: str, entry: LogFile, offset: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reset = False
        while True:
            try:
                fd = open_log(entry)
            except LogMissing:
                offset, reset = 0, reset or offset > 0
                await asyncio.sleep(FOLLOW_INTERVAL)
                continue
            except GdosError as exc:
                log.warning("stopped following %s of %s: %s", entry.name, instance_id, exc)
                await self.send(
                    LogChunk(
                        instance_id=instance_id,
                        name=entry.name,
                        offset=offset,
                        data="",
                        error=exc.message,
                    )
                )
                return
            try:
                size = os.fstat(fd).st_size
                if size < offset:  # rotated (copytruncate) or truncated
                    offset, reset = 0, True
                    decoder.reset()
                if size - offset > MAX_PER_TICK:
                    offset, reset = size - MAX_PER_TICK, True
                    decoder.reset()
                while offset < size:
                    data = os.pread(fd, min(CHUNK, size - offset), offset)
                    if not data:
                        break
                    text = decoder.decode(data)
                    await self.send(
                        LogChunk(
                            instance_id=instance_id,
                            name=entry.name,
                            offset=offset,
                            data=text,
                            reset=reset,
                        )
                    )
                    offset += len(data)
                    reset = False
            finally:
                os.close(fd)
            await asyncio.sleep(FOLLOW_INTERVAL)
