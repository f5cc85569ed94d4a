"""The agent's durable memory: what it runs, written so that a crash never leaves half a file.

Saves are group-committed (one writer flushes every change so far; nobody hears "done" before
their change is written) and run on the state file's own thread, never on the event loop.
Deploys, adoptions and destroys replace the file (fsync, rename); process states go to two slots
rewritten in place (`agent.slots`), as a rename waits for the filesystem's journal. Every save
carries a sequence number; loading takes the newest whole copy among the file and the slots.
"""

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from agent.slots import SUPPORTED as SLOTS_SUPPORTED
from agent.slots import Slots, write_all

log = logging.getLogger(__name__)

STATE_VERSION = 1


def atomic_write(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write through a temporary file and a rename: readers see the old or the new file, never
    half of one. `durable` also syncs to disk (survives a power loss, not only a crash of this
    process, for which the page cache is enough)."""
    tmp = path.with_name(f".{path.name}.tmp")
    # O_BINARY (Windows only): never translate newlines; `mode` is ignored there beyond read-only.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, mode)
    try:
        write_all(fd, data)  # a short write (a full disk) must not be renamed over the good file
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable and os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class Unreadable(Exception):
    """A file the agent needs is there but cannot be read (permissions, a failing disk, a folder
    in its place). The agent stops with this message rather than start afresh without it."""


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON object; a missing file is None, a corrupt one is set aside and also None.
    A file that cannot be read at all raises `Unreadable` and is left as it is: setting it aside
    would make the agent forget everything it runs over what may be a passing fault."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unreadable(
            f"cannot read {path}: {exc.strerror or exc}; it was left as it is: make it readable "
            "and start the agent again"
        ) from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        aside = path.with_name(path.name + ".corrupt")
        log.error("%s is unreadable (%s); moved to %s", path, exc, aside)
        os.replace(path, aside)
        return None
    return data if isinstance(data, dict) else None


class StateFile:
    """`{"version": 1, "seq": n, "instances": {id: record}}` kept in memory, flushed on `save()`;
    with `collect` set, the records are asked for at each write instead and not kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.slots = Slots(path) if SLOTS_SUPPORTED else None
        loaded = read_json(path)
        # The durable write the slots follow: None for no file, or a file without a sequence
        # number (an older agent wrote it). Then no slot is read, and the first save writes
        # the file, so that every later slot names the file it follows.
        self._base = _seq_of(loaded)
        try:
            whole = self.slots.whole() if self.slots else []  # newest first
        except OSError as exc:
            raise Unreadable(
                f"cannot read the state slots beside {path} ({exc}); they were left as they are: "
                f"make them readable, or delete them to start from {path.name} alone"
            ) from exc
        # New writes come after anything on disk, read or not.
        self._seq = max([self._base or 0, *(slot.seq for slot in whole)])
        for slot in whole if self._base is not None else []:
            if slot.base != self._base or slot.seq <= self._base:
                continue  # from another history, or older than the file
            try:
                table = json.loads(slot.payload)
            except ValueError:  # whole by its checksum, yet unreadable: not ours to trust
                table = None
            if isinstance(table, dict):
                loaded = table
                # The next write must not land on the copy just read: the newest slot may be
                # from another history, and a write cut short there would leave only the file.
                assert self.slots is not None  # the slot was read from them
                self.slots.keep(slot.index)
                break
            log.error("state slot %s is unreadable; trying an older copy", slot.index)
        self.instances: dict[str, dict[str, Any]] = dict((loaded or {}).get("instances") or {})
        # Where the records come from, asked once per write rather than once per change: a
        # batch of changes that land in one write then builds the table once.
        self.collect: Callable[[], dict[str, dict[str, Any]]] | None = None
        self._waiters: list[tuple[asyncio.Future[None], bool]] = []
        self._writer: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gdos-state")
        self._io.submit(lambda: None).result()  # its thread starts now, not in a busy moment

    def snapshot(self) -> bytes:
        table = self.instances
        if self.collect is not None:
            # Built afresh for each write, so not kept: the table read at start goes too.
            table = self.collect()
            self.instances = {}
        # msgspec rather than json: much faster on a table of many manifests.
        return msgspec.json.encode(
            {"version": STATE_VERSION, "seq": self._seq, "instances": table}, order="sorted"
        )

    async def save(self, durable: bool = True) -> None:
        """Wait until the table as it is now is written (and synced to disk when `durable`).

        Process states need not be durable: an agent that crashes still finds what it wrote in
        the page cache, and a power loss ends the services too (their records then read as
        "ended while the agent was not running"). Deploys, adoptions and destroys are durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((fut, durable))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        while self._waiters:
            waiters, self._waiters = self._waiters, []
            self._seq += 1
            seq, data = self._seq, self.snapshot()
            durable = any(d for _, d in waiters)
            whole_file = self.slots is None or durable or self._base is None
            if whole_file:
                write = functools.partial(
                    atomic_write, self.path, data, durable=durable or self._base is None
                )
            else:
                assert self.slots is not None and self._base is not None
                write = functools.partial(self.slots.write, seq, self._base, data)
            try:
                await asyncio.get_running_loop().run_in_executor(self._io, write)
                if whole_file:
                    self._base = seq
            except OSError as exc:
                if whole_file:
                    # The rename may have happened (the directory's sync failed after it): which
                    # file is on disk is unknown, so no slot may name one until the next save
                    # writes the file again. Else later slots would name the file before, and
                    # a restart would pass them over for the file, losing saves reported done.
                    self._base = None
                for w, _ in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w, _ in waiters:
                if not w.done():
                    w.set_result(None)


def _seq_of(table: dict[str, Any] | None) -> int | None:
    seq = table.get("seq") if table is not None else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
