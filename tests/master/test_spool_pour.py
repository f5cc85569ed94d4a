"""A body poured straight from its socket into a real file (`Spool.pour`): the file, its sha256
and its CRC marks always match the bytes sent, a cut body leaves exactly what arrived and resumes
from there, and a full disk leaves whole buffers."""

import contextlib
import errno
import hashlib
import os
import socket
import threading
import zlib
from pathlib import Path

import pytest

from master.storage.socket_reader import SocketReader, can_poll
from master.storage.spool import Spool, hash_prefix

pytestmark = pytest.mark.skipif(not can_poll(), reason="poll() is Linux's")

BATCH = 64 << 10
REAL_WRITE = os.write
spools: list[Spool] = []  # the last one poured into


async def pour(path: Path, data: bytes, length: int) -> Spool:
    """Send `data` over a socket pair, then close it; pour a body of `length` bytes into `path`
    from its current end."""
    start = path.stat().st_size
    hasher, marks = hash_prefix(path, start)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)

    def send() -> None:
        with theirs, contextlib.suppress(OSError):  # the reader may stop first and close
            theirs.sendall(data)

    sender = threading.Thread(target=send)
    sender.start()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    reader = SocketReader(os.dup(ours.fileno()), b"", length, idle_timeout=30)
    spool = Spool(fd, hasher, start, batch=BATCH, marks=marks)
    spools.append(spool)
    try:
        await spool.pour(reader)
    except BaseException:
        spool.settle_now()  # as `Body.pour` does: the threads are done with the fd
        raise
    finally:
        reader.close()
        os.close(fd)
        ours.close()
        sender.join()
    return spool


def assert_matches(path: Path, spool: Spool, expected: bytes) -> None:
    assert path.read_bytes() == expected
    assert spool.offset == len(expected)
    assert spool.hasher.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert spool.marks is not None and spool.marks.crc == zlib.crc32(expected)


async def test_a_cut_body_keeps_what_arrived_and_resumes_from_there(tmp_path: Path):
    path = tmp_path / "f.part"
    path.touch()
    data = os.urandom(7 * BATCH + 4_321)
    cut_at = 3 * BATCH + 1_234
    first = await pour(path, data[:cut_at], len(data))
    assert_matches(path, first, data[:cut_at])  # the tus offset is the file's size
    second = await pour(path, data[cut_at:], len(data) - cut_at)
    assert_matches(path, second, data)


async def test_a_full_disk_mid_body_keeps_whole_buffers_and_a_matching_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """ENOSPC while more of the body waits in the socket: the error reaches the caller, the
    threads end (none waits for a buffer forever), and the file holds whole buffers that its
    hash and CRC marks match: a resumable upload's offset."""
    room = [3 * BATCH + 100]

    def disk_fills_up(fd: int, data: bytes | memoryview) -> int:
        if len(data) > room[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        room[0] -= len(data)
        return REAL_WRITE(fd, data)

    monkeypatch.setattr(os, "write", disk_fills_up)
    path = tmp_path / "f.part"
    path.touch()
    data = os.urandom(12 * BATCH)
    with pytest.raises(OSError) as exc:
        await pour(path, data, len(data))
    assert exc.value.errno == errno.ENOSPC
    assert_matches(path, spools[-1], data[: 3 * BATCH])
