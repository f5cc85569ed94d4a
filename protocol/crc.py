"""CRC-32 (zip's checksum) of a byte range of a file, in parallel pieces.

CRC-32 of a long range is one sequential pass on one core, but the checksums of consecutive
pieces combine into the checksum of the whole (`crc32_combine`, the algorithm of zlib's function
of that name, which Python's zlib module does not expose). So a large range is split across
threads (zlib releases the GIL while it sums) and the pieces are combined, which is cheap.
A file summed while it was written (`CrcMarks`) needs only the ends of a range read again.
"""

import concurrent.futures
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

PIECE_MIN = 16 << 20  # a range is only split into pieces of at least this many bytes
_BUF = 1 << 20  # read size: small enough to stay in the CPU's cache between read and sum
_POLY = 0xEDB88320  # CRC-32's polynomial, bit-reversed
MARK_STEP = 1 << 20  # bytes between two remembered CRCs of a file being written (CrcMarks)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    i = 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


_ZEROS: list[list[int]] = []  # _ZEROS[k]: the operator that appends 2**k zero bytes to a CRC
_ZEROS_LOCK = threading.Lock()  # validations in two threads must not both extend the table


def _zeros_operator(k: int) -> list[int]:
    if k < len(_ZEROS):
        return _ZEROS[k]
    with _ZEROS_LOCK:
        if not _ZEROS:
            op = [_POLY] + [1 << n for n in range(31)]  # one zero bit
            for _ in range(3):
                op = _gf2_square(op)
            _ZEROS.append(op)  # one zero byte
        while len(_ZEROS) <= k:
            _ZEROS.append(_gf2_square(_ZEROS[-1]))
        return _ZEROS[k]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B)."""
    # Appending len2 zero bytes to crc1 is a linear map: one squared operator per bit of len2.
    k = 0
    while len2 > 0 and crc1:
        if len2 & 1:
            crc1 = _gf2_times(_zeros_operator(k), crc1)
        len2 >>= 1
        k += 1
    return crc1 ^ crc2


def _range_crc(path: Path, start: int, length: int) -> int:
    buf = bytearray(min(_BUF, max(length, 1)))
    view = memoryview(buf)
    crc = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        left = length
        while left > 0:
            n = f.readinto(view[: min(len(buf), left)])
            if not n:
                raise EOFError(f"{path} ends {left} bytes before the range does")
            crc = zlib.crc32(view[:n], crc)
            left -= n
    return crc


def file_crc32(path: Path, start: int, length: int, workers: int | None = None) -> int:
    """crc32 of `length` bytes of `path` from `start`, on up to `workers` threads (default:
    one per CPU). Raises EOFError if the file ends first, OSError if it cannot be read."""
    pieces = max(1, min(workers or os.cpu_count() or 1, length // PIECE_MIN))
    if pieces == 1:
        return _range_crc(path, start, length)
    bounds = [start + length * i // pieces for i in range(pieces + 1)]
    with concurrent.futures.ThreadPoolExecutor(pieces, "gdos-crc") as pool:
        crcs = list(
            pool.map(
                lambda i: _range_crc(path, bounds[i], bounds[i + 1] - bounds[i]), range(pieces)
            )
        )
    crc = crcs[0]
    for i in range(1, pieces):
        crc = crc32_combine(crc, crcs[i], bounds[i + 1] - bounds[i])
    return crc


Crc32 = Callable[[memoryview, int], int]  # zlib.crc32, or a faster function of its signature


class CrcMarks:
    """The CRC-32 of a file taken as it is written, remembered every `step` bytes.

    The CRC of any range of the file then costs reading at most two steps of it (the ends that
    fall between marks) instead of the whole range: the middle is derived from two marks.
    """

    def __init__(self, step: int = MARK_STEP, crc32: Crc32 = zlib.crc32) -> None:
        self.step = step
        self.size = 0  # bytes summed so far
        self.crc = 0  # their CRC-32
        self.marks = [0]  # marks[k]: the CRC-32 of the first k * step bytes
        self._crc32 = crc32

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            part = view[: self.step - self.size % self.step]
            self.crc = self._crc32(part, self.crc)
            self.size += len(part)
            if self.size % self.step == 0:
                self.marks.append(self.crc)
            view = view[len(part) :]

    def range_crc(self, path: Path, start: int, length: int) -> int:
        """crc32 of `length` bytes of `path` from `start`, which must be the file these marks
        were taken of. Raises EOFError past the end, OSError if the file cannot be read."""
        end = start + length
        if start < 0 or length < 0 or end > self.size:
            raise EOFError(f"{path} ends {end - self.size} bytes before the range does")
        first = -(-start // self.step)  # the first mark inside the range, and the last
        last = end // self.step
        if last - first < 2:  # no more than two steps: reading it is as cheap
            return _range_crc(path, start, length)
        lo, hi = first * self.step, last * self.step
        # The CRC of [lo, hi): the mark at hi without what the bytes before lo put in it.
        middle = crc32_combine(self.marks[first], self.marks[last], hi - lo)
        crc = crc32_combine(_range_crc(path, start, lo - start), middle, hi - lo)
        return crc32_combine(crc, _range_crc(path, hi, end - hi), end - hi)
