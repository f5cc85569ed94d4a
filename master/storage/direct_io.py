"""Writes that skip the page cache (O_DIRECT) for a spool's body read straight from its socket.

A buffered write copies every byte into page-cache pages the kernel has just allocated; in a
VM whose host took those pages back, the first touch of each is the most expensive part of an
upload after sha256. A direct write hands the spool's own reused buffers to the disk instead.
The kernel then needs the buffer, the file offset and the length aligned to `ALIGN`: the spool
writes an unaligned head or tail through the page cache, and a file system that refuses direct
I/O (tmpfs, some network file systems) gets buffered writes throughout.

`O_DIRECT` is switched on the spool's own fd with fcntl, only for a regular file (on a pipe the
flag means packet mode), and switched off again once the body is written.
"""

import mmap
import os
import stat

ALIGN = 4096  # the largest logical block size of common disks: offsets and lengths align to it
O_DIRECT: int = getattr(os, "O_DIRECT", 0)


def aligned_buffer(size: int) -> mmap.mmap:
    """A writable buffer of `size` bytes at a page boundary (anonymous memory)."""
    return mmap.mmap(-1, size)


def set_direct(fd: int, on: bool) -> bool:
    """Switch direct I/O on or off for `fd`; False when it cannot be on (then it is off)."""
    if not O_DIRECT:
        return False
    import fcntl  # where O_DIRECT exists, so does fcntl

    try:
        if on and not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        wanted = flags | O_DIRECT if on else flags & ~O_DIRECT
        if wanted != flags:
            fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    except OSError:  # the file system refuses the flag
        return False
    return on


def can_write_direct(offset: int, length: int) -> bool:
    """Whether a write of `length` bytes at file `offset` from an aligned buffer may go direct."""
    return length > 0 and offset % ALIGN == 0 and length % ALIGN == 0
