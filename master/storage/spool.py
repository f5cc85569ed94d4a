"""Append a streamed request body to a file, hashing on the way, without holding it in memory.

The event loop only collects the chunks the server hands it, in batches. Two threads of the
spool's own take each batch in order: one writes it to the file, the other feeds it to sha256
(both release the GIL). sha256 is the slowest step of an upload and cannot be split (each block
depends on the one before), so it gets a thread to itself that never waits for disk writes or
for the loop: the loop may run up to `WINDOW` batches ahead. A body costs at most `WINDOW + 1`
batches of memory whatever its size.

Before each batch the writer reserves its blocks (`prealloc.reserve`: cheaper writes on ext4).
The writer also takes the CRC-32 of what it wrote (`CrcMarks`), which is cheap beside sha256
with zlib-ng's CRC: validation then checks a large stored entry's CRC without reading it again,
and nothing but the last batch's hash is left to do once the last byte arrived.

A body whose socket the loop hands over (`pour`) skips the loop altogether: the writer thread
reads it from the socket into buffers of `batch` bytes it reuses, writes each and passes it to
the hash thread, which gives it back once hashed (`window + 1` buffers in all).

A byte counts as received once the kernel has it (`os.write` returned): that survives the
master process dying, which is what a resumable upload needs. The hasher only takes bytes the
writer has written, so after a failed write (cut back to the last whole chunk) the file size,
the running hash and the CRC marks still agree.
"""

import asyncio
import collections
import concurrent.futures
import hashlib
import os
import queue
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from master.storage.prealloc import reserve
from master.storage.socket_reader import SocketReader
from protocol.crc import Crc32, CrcMarks

if TYPE_CHECKING:
    from hashlib import _Hash

try:  # zlib-ng sums CRC-32 with the CPU's carry-less multiply, several times zlib's speed
    from zlib_ng.zlib_ng import crc32 as _fast_crc32
except ImportError:  # pragma: no cover - zlib-ng is a dependency; zlib gives the same sums
    from zlib import crc32 as _fast_crc32

fast_crc32: Crc32 = _fast_crc32

BATCH = 2 << 20  # bytes handed to the threads at once
WINDOW = 3  # batches the loop may have handed over and not yet seen hashed
_READ = 1 << 20
# Bytes per write() call: not a power of two, so that the file offsets of the writes are not
# aligned to one either. An aligned large write makes the kernel take a large page-cache folio,
# which needs contiguous memory (in a VM, often memory the host took back): several times the
# CPU of the same bytes written into small folios.
WRITE_PIECE = 252 << 10


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` where the OS shows it (top -H, /proc/<pid>/task/*/comm)."""
    if sys.platform == "linux":
        import ctypes

        pr_set_name = 15
        ctypes.CDLL(None).prctl(pr_set_name, name.encode()[:15], 0, 0, 0)


def new_hash() -> "_Hash":
    return hashlib.sha256()


def new_marks() -> CrcMarks:
    return CrcMarks(crc32=fast_crc32)


def hash_prefix(path: Path, size: int) -> tuple["_Hash", CrcMarks]:
    """The running hash and CRC marks of the first `size` bytes of `path` (to resume after a
    restart)."""
    h = new_hash()
    marks = new_marks()
    left = size
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(_READ, left))
            if not chunk:
                raise OSError(f"{path} is shorter than {size} bytes")
            h.update(chunk)
            marks.update(chunk)
            left -= len(chunk)
    return h, marks


class Spool:
    """Writes chunks at the end of an open file; `offset` counts the bytes the kernel holds."""

    def __init__(
        self,
        fd: int,
        hasher: "_Hash",
        offset: int,
        batch: int = BATCH,
        window: int = WINDOW,
        marks: CrcMarks | None = None,
    ) -> None:
        self.fd = fd
        self.hasher = hasher
        self.offset = offset
        self.marks = marks  # of the file from its first byte, when given: offset == marks.size
        self._batch = batch
        self._window = window
        self._chunks: list[bytes] = []
        self._pending = 0
        self._failed = False  # a write failed: later batches are not written (nor hashed)
        self._flights: collections.deque[concurrent.futures.Future[None]] = collections.deque()
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._hashing: concurrent.futures.ThreadPoolExecutor | None = None

    async def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._pending += len(chunk)
        if self._pending >= self._batch:
            await self._hand_off()

    async def drain(self) -> None:
        """Wait until every chunk fed so far is written and hashed (raises the write's OSError)."""
        await self._hand_off()
        try:
            while self._flights:
                await self._settle_oldest()
        finally:
            if not self._flights:
                self._stop_threads()

    async def pour(self, reader: SocketReader) -> None:
        """Write and hash the rest of the body straight from `reader`'s socket on the spool's
        threads until it ends (complete, cut or stalled: `reader` says which); raises the
        write's OSError. Cancelled, it stops the reader (call `settle_now` after)."""
        await self._hand_off()
        while self._flights:
            await self._settle_oldest()
        free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(self._window + 1):
            free.put(bytearray(self._batch))
        full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._start_threads()
        assert self._writer is not None and self._hashing is not None
        self._flights.append(self._writer.submit(self._receive, reader, free, full))
        self._flights.append(self._hashing.submit(self._hash_buffers, free, full))
        try:
            while self._flights:
                await self._settle_oldest()
        except BaseException:
            reader.stop()
            raise
        finally:
            if not self._flights:
                self._stop_threads()

    def settle_now(self) -> None:
        """Block until the threads are idle (after a cancellation or an error: the fd must
        outlive them)."""
        concurrent.futures.wait(self._flights)
        self._flights.clear()
        self._stop_threads()

    async def _hand_off(self) -> None:
        if not self._chunks:
            return
        while len(self._flights) >= self._window:
            await self._settle_oldest()
        chunks, self._chunks, self._pending = self._chunks, [], 0
        self._start_threads()
        assert self._writer is not None and self._hashing is not None
        written = self._writer.submit(self._write, chunks)
        self._flights.append(self._hashing.submit(self._hash, chunks, written))

    async def _settle_oldest(self) -> None:
        flight = self._flights[0]
        await asyncio.shield(asyncio.wrap_future(flight))  # cancelled: settle_now() waits
        self._flights.popleft()

    def _start_threads(self) -> None:
        if self._writer is None or self._hashing is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(
                1, "gdos-spool-write", initializer=name_os_thread, initargs=("gdos-spool-write",)
            )
            self._hashing = concurrent.futures.ThreadPoolExecutor(
                1, "gdos-spool-hash", initializer=name_os_thread, initargs=("gdos-spool-hash",)
            )

    def _stop_threads(self) -> None:
        for pool in (self._writer, self._hashing):
            if pool is not None:
                pool.shutdown(wait=False)
        self._writer = self._hashing = None

    def _write(self, chunks: Sequence[bytes | memoryview]) -> tuple[int, OSError | None]:
        """Write whole chunks; returns how many made it, and the error that stopped it."""
        fd = self.fd
        if not self._failed:
            reserve(fd, self.offset, sum(map(len, chunks)))
        for i, chunk in enumerate(chunks):
            if self._failed:
                return i, None
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view[:WRITE_PIECE]) :]
            except OSError as exc:
                self._failed = True
                os.ftruncate(fd, self.offset)  # never half a chunk: size and hash stay in step
                return i, exc
            self.offset += len(chunk)
            if self.marks is not None:
                self.marks.update(chunk)
        return len(chunks), None

    def _hash(
        self, chunks: list[bytes], written: "concurrent.futures.Future[tuple[int, OSError | None]]"
    ) -> None:
        """Hash what the writer wrote of this batch (it is usually done long before)."""
        hasher = self.hasher
        count, error = written.result()
        for chunk in chunks[:count]:
            hasher.update(chunk)
        if error is not None:
            raise error

    def _receive(
        self,
        reader: SocketReader,
        free: "queue.SimpleQueue[bytearray]",
        full: "queue.SimpleQueue[tuple[bytearray, int] | None]",
    ) -> None:
        """Writer thread: fill a free buffer from the socket, write it, pass it to the hasher."""
        try:
            while not reader.ended:
                buffer = free.get()
                view = memoryview(buffer)
                n = reader.fill(view)
                if not n:
                    free.put(buffer)
                    continue
                count, error = self._write([view[:n]])
                if count:
                    full.put((buffer, n))
                if error is not None:
                    reader.stop()
                    raise error
        finally:
            full.put(None)

    def _hash_buffers(
        self,
        free: "queue.SimpleQueue[bytearray]",
        full: "queue.SimpleQueue[tuple[bytearray, int] | None]",
    ) -> None:
        """Hash thread: hash each written buffer in order and give it back for the next bytes."""
        hasher = self.hasher
        while (item := full.get()) is not None:
            buffer, n = item
            hasher.update(memoryview(buffer)[:n])
            free.put(buffer)
