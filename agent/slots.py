"""Two checksummed slots rewritten in place: a crash-safe write with no new file, no truncate
and no rename (each of which waits for the filesystem's journal).

A write goes to the slot not holding the last good write, so a write cut short spoils only that
slot (its checksum fails; the other is read). Nothing is synced to disk: the slots hold changes
that need not survive a power loss, and each names the durable file it follows (`base`), so a
slot left from another history is never read.
"""

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = hasattr(os, "pwrite")  # POSIX; elsewhere the agent writes a whole file each time

MAGIC = b"GDOSSLT2"
# magic, sequence number, base (the sequence number of the durable file it follows), payload
# length, crc32 of everything before it in the header and of the payload
HEADER = struct.Struct("<8sQQI")
CRC = struct.Struct("<I")


@dataclass(frozen=True)
class Slot:
    index: int
    seq: int
    base: int
    payload: bytes


class Slots:
    """`.<name>.slot0` and `.<name>.slot1` beside `path`."""

    def __init__(self, path: Path) -> None:
        self.paths = [path.with_name(f".{path.name}.slot{i}") for i in (0, 1)]
        self._fds: list[int | None] = [None, None]
        # The slot holding the copy to fall back on: the last good write, or the copy loaded.
        self._last_good: int | None = None

    def write(self, seq: int, base: int, payload: bytes) -> None:
        """Header and payload at offset 0 of the slot not holding the last good write; what lies
        beyond them is stale and never read."""
        i = 1 if self._last_good == 0 else 0
        fd = self._fds[i]
        if fd is None:
            fd = os.open(self.paths[i], os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[i] = fd
        head = HEADER.pack(MAGIC, seq, base, len(payload))
        data = head + CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload
        write_all(fd, data, offset=0)
        self._last_good = i

    def keep(self, index: int) -> None:
        """The next write goes to the other slot: this one holds the copy to fall back on."""
        self._last_good = index

    def whole(self) -> list[Slot]:
        """The slots whose checksum holds, newest first."""
        found: list[Slot] = []
        for i, path in enumerate(self.paths):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            size = HEADER.size + CRC.size
            if len(raw) < size:
                continue
            magic, seq, base, length = HEADER.unpack_from(raw)
            (crc,) = CRC.unpack_from(raw, HEADER.size)
            payload = raw[size : size + length]
            if magic != MAGIC or len(payload) != length:
                continue
            if zlib.crc32(payload, zlib.crc32(raw[: HEADER.size])) != crc:
                continue
            found.append(Slot(i, seq, base, payload))
        found.sort(key=lambda s: s.seq, reverse=True)
        return found


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of `data` (a short write is not an error), at `offset` with `os.pwrite`, else at
    the file's position. Used by the slots and by the state file's whole-file writes."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"a write of {len(view)} bytes wrote nothing")
        view = view[n:]
        if offset is not None:
            offset += n
