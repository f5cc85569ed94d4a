"""CRC-32 (zip's checksum) of a byte range of a file, in parallel pieces.

CRC-32 of a long range is one sequential pass on one core, but the checksums of consecutive
pieces combine into the checksum of the whole (`crc32_combine`, the algorithm of zlib's function
of that name, which Python's zlib module does not expose). So a large range is split across
threads (zlib releases the GIL while it sums) and the pieces are combined, which is cheap.
"""

import concurrent.futures
import os
import zlib
from pathlib import Path

PIECE_MIN = 16 << 20  # a range is only split into pieces of at least this many bytes
_BUF = 1 << 20  # read size: small enough to stay in the CPU's cache between read and sum
_POLY = 0xEDB88320  # CRC-32's polynomial, bit-reversed


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


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B)."""
    if len2 <= 0:
        return crc1
    odd = [_POLY] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    # Apply len2 zero bytes to crc1, squaring the operator for each bit of len2.
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
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
