"""Reserve disk blocks for the next bytes of a file before writing them, without changing its size.

Appending to a file on ext4 allocates blocks as it goes (delayed allocation): bookkeeping on
every page written, on the thread that writes. Blocks reserved first, a batch at a time, with
`fallocate`'s FALLOC_FL_KEEP_SIZE make those writes cheaper, and the file's size still counts
only the bytes written (a resumable upload's offset is its file's size). Where the call is
missing (not Linux, not glibc) or the filesystem refuses it (a full disk included), nothing is
reserved and the write allocates, or fails, as it would have.
"""

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

FALLOC_FL_KEEP_SIZE = 1

_Fallocate = Callable[[int, int, int, int], int]
_fallocate: _Fallocate | None = None
_looked = False


def _load() -> _Fallocate | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    call: _Fallocate = fn
    return call


def reserve(fd: int, offset: int, length: int) -> bool:
    """Reserve `length` bytes of `fd` from `offset`, leaving its size alone; False if not done."""
    global _fallocate, _looked
    if not _looked:
        _fallocate, _looked = _load(), True
    if _fallocate is None or length <= 0:
        return False
    if _fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        log.debug("no blocks reserved (errno %d): writes allocate them", ctypes.get_errno())
        return False
    return True
