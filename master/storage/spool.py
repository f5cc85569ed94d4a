"""Append a streamed request body to a file, hashing on the way, without holding it in memory.

The event loop only collects the chunks the server hands it; a worker thread writes and hashes
them (both release the GIL), one batch while the loop gathers the next. So a body costs at most
two batches of memory whatever its size, and the two cores share the work.

A byte counts as received once the kernel has it (`os.write` returned): that survives the
master process dying, which is what a resumable upload needs. A failed write is cut back to the
last whole chunk, so the file size and the running hash always agree.
"""

import asyncio
import concurrent.futures
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash

BATCH = 2 << 20  # bytes handed to the writer thread at once
_READ = 1 << 20

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="gdos-spool")


def new_hash() -> "_Hash":
    return hashlib.sha256()


def hash_prefix(path: Path, size: int) -> "_Hash":
    """The running hash of the first `size` bytes of `path` (to resume after a restart)."""
    h = new_hash()
    left = size
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(_READ, left))
            if not chunk:
                raise OSError(f"{path} is shorter than {size} bytes")
            h.update(chunk)
            left -= len(chunk)
    return h


class Spool:
    """Writes chunks at the end of an open file; `offset` counts the bytes the kernel holds."""

    def __init__(self, fd: int, hasher: "_Hash", offset: int, batch: int = BATCH) -> None:
        self.fd = fd
        self.hasher = hasher
        self.offset = offset
        self._batch = batch
        self._chunks: list[bytes] = []
        self._pending = 0
        self._flight: concurrent.futures.Future[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._pending += len(chunk)
        if self._pending >= self._batch:
            await self._hand_off()

    async def drain(self) -> None:
        """Wait until every chunk fed so far is written (raises the write's OSError)."""
        await self._hand_off()
        await self._settle()

    def settle_now(self) -> None:
        """Block until the writer thread is idle (after a cancellation: the fd must outlive it)."""
        if self._flight is not None:
            concurrent.futures.wait([self._flight])

    async def _hand_off(self) -> None:
        await self._settle()
        if not self._chunks:
            return
        chunks, self._chunks, self._pending = self._chunks, [], 0
        self._flight = _pool.submit(self._write, chunks)

    async def _settle(self) -> None:
        flight, self._flight = self._flight, None
        if flight is not None:
            try:
                await asyncio.wrap_future(flight)
            except asyncio.CancelledError:
                self._flight = flight  # still running in its thread; settle_now() waits for it
                raise

    def _write(self, chunks: list[bytes]) -> None:
        fd, hasher = self.fd, self.hasher
        for chunk in chunks:
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                os.ftruncate(fd, self.offset)  # never half a chunk: size and hash stay in step
                raise
            hasher.update(chunk)
            self.offset += len(chunk)
