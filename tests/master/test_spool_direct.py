"""A body poured straight from its socket into a real file (`Spool.pour`): the aligned middle
skips the page cache (O_DIRECT), an unaligned head and tail do not; the file, its sha256 and its
CRC marks always match the bytes sent, a cut body leaves exactly what arrived and resumes from
there, and a file system that refuses direct writes gets buffered ones."""

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import threading
import zlib
from pathlib import Path

import pytest

from master.storage import direct_io
from master.storage.socket_reader import SocketReader, can_poll
from master.storage.spool import Spool, hash_prefix

pytestmark = pytest.mark.skipif(
    not (can_poll() and direct_io.O_DIRECT), reason="O_DIRECT and poll() are Linux's"
)

BATCH = 64 << 10
REAL_WRITE = os.write
spools: list[Spool] = []  # the last one poured into


def refuses_direct(path: Path) -> bool:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        return not direct_io.set_direct(fd, True)
    finally:
        os.close(fd)
        path.unlink()


class Writes:
    """`os.write` that records (file offset, bytes, O_DIRECT on) for every call on `fd`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.calls: list[tuple[int, int, bool]] = []

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if fd == self.fd:
            direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & direct_io.O_DIRECT)
            self.calls.append((os.fstat(fd).st_size, len(data), direct))
        return REAL_WRITE(fd, data)


async def pour(path: Path, data: bytes, length: int, write: Writes | None = None) -> Spool:
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
    if write is not None:
        write.fd = fd
    reader = SocketReader(os.dup(ours.fileno()), b"", length, idle_timeout=30)
    spool = Spool(fd, hasher, start, batch=BATCH, marks=marks)
    spools.append(spool)
    try:
        await spool.pour(reader)
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & direct_io.O_DIRECT, "left on after the body"
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


async def test_the_aligned_middle_goes_direct_between_a_buffered_head_and_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if refuses_direct(tmp_path / "probe"):
        pytest.skip("this file system refuses O_DIRECT")
    path = tmp_path / "f.part"
    prefix = os.urandom(10_001)  # an earlier PATCH ended at an unaligned offset
    path.write_bytes(prefix)
    data = os.urandom(5 * BATCH + 777)
    writes = Writes(-1)
    monkeypatch.setattr(os, "write", writes)
    spool = await pour(path, data, len(data), writes)
    assert_matches(path, spool, prefix + data)
    head = -len(prefix) % direct_io.ALIGN
    assert writes.calls[0] == (len(prefix), head, False)
    direct = [(at, n) for at, n, on in writes.calls if on]
    assert direct and all(
        at % direct_io.ALIGN == 0 and n % direct_io.ALIGN == 0 for at, n in direct
    )
    assert sum(n for _, n in direct) >= 4 * BATCH
    assert not writes.calls[-1][2]  # the unaligned tail


async def test_a_cut_body_keeps_what_arrived_and_resumes_from_there(tmp_path: Path):
    path = tmp_path / "f.part"
    path.touch()
    data = os.urandom(7 * BATCH + 4_321)
    cut_at = 3 * BATCH + 1_234
    first = await pour(path, data[:cut_at], len(data))
    assert_matches(path, first, data[:cut_at])  # the tus offset is the file's size
    second = await pour(path, data[cut_at:], len(data) - cut_at)
    assert_matches(path, second, data)


async def test_a_file_system_refusing_the_flag_gets_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from master.storage import spool as spool_module

    asked: list[bool] = []

    def refuse(fd: int, on: bool) -> bool:
        asked.append(on)
        return False

    monkeypatch.setattr(spool_module, "set_direct", refuse)
    path = tmp_path / "f.part"
    path.touch()
    writes = Writes(-1)
    monkeypatch.setattr(os, "write", writes)
    data = os.urandom(4 * BATCH + 99)
    spool = await pour(path, data, len(data), writes)
    assert_matches(path, spool, data)
    assert asked == [True]  # asked once, then never again for this body
    assert writes.calls and not any(on for _, _, on in writes.calls)


async def test_direct_writes_refused_at_write_time_fall_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if refuses_direct(tmp_path / "probe"):
        pytest.skip("this file system refuses O_DIRECT")
    refused: list[int] = []

    def no_direct(fd: int, data: bytes | memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & direct_io.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return REAL_WRITE(fd, data)

    monkeypatch.setattr(os, "write", no_direct)
    path = tmp_path / "f.part"
    path.touch()
    data = os.urandom(4 * BATCH + 99)
    spool = await pour(path, data, len(data))
    assert_matches(path, spool, data)
    assert refused == [BATCH]  # tried once, then never again for this body


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
