"""Two checksummed slots, each a small file rewritten in place: a crash-safe write that needs no
new file, no truncate and no rename.

The agent saves its table on every start and stop. The atomic way, a temporary file renamed
over the old one, needs the filesystem's journal for the create and the rename, and on ext4
beside a busy writer those took 5-7.5 ms median and up to 1-2 s (bench/RESULTS.md, Issue 9),
while a write into an existing file took 0.04 ms. Writes alternate between the two slots, so a
write cut short (the agent killed in the middle of it) spoils only the slot being written: its
checksum fails, and the other slot, one write older, is read. Nothing here is synced to disk:
the slots hold changes that need not survive a power loss; the durable file holds the rest.
"""

import os
import struct
import zlib
from pathlib import Path

SUPPORTED = hasattr(os, "pwrite")  # POSIX; elsewhere the agent writes a whole file each time

MAGIC = b"GDOSSLOT"
HEADER = struct.Struct("<8sQII")  # magic, sequence number, payload length, crc32 of the payload


class Slots:
    """`.<name>.slot0` and `.<name>.slot1` beside `base`; the even sequence numbers go to 0."""

    def __init__(self, base: Path) -> None:
        self.paths = [base.with_name(f".{base.name}.slot{i}") for i in (0, 1)]
        self._fds: list[int | None] = [None, None]

    def write(self, seq: int, payload: bytes) -> None:
        """One positioned write of header and payload; what lies beyond them is stale, unread."""
        i = seq % 2
        fd = self._fds[i]
        if fd is None:
            fd = os.open(self.paths[i], os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[i] = fd
        header = HEADER.pack(MAGIC, seq, len(payload), zlib.crc32(payload))
        os.pwrite(fd, header + payload, 0)

    def newest(self) -> tuple[int, bytes] | None:
        """The whole slot with the highest sequence number, if any slot is whole."""
        best: tuple[int, bytes] | None = None
        for path in self.paths:
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            if len(raw) < HEADER.size:
                continue
            magic, seq, length, crc = HEADER.unpack_from(raw)
            payload = raw[HEADER.size : HEADER.size + length]
            if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                continue
            if best is None or seq > best[0]:
                best = (seq, payload)
        return best

    def close(self) -> None:
        for i, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
                self._fds[i] = None
