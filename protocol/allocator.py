"""glibc's malloc tuning, shared by the master and the agent (elsewhere nothing is set)."""

from __future__ import annotations

import sys

# mallopt()'s parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def mallopt(param: int, value: int) -> bool:
    """Set one of glibc's malloc parameters; False where there is no glibc or it refused."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(param, value))
    except (OSError, AttributeError):  # no C library to ask, or not one with mallopt
        return False


def malloc_trim() -> bool:
    """Give the whole free pages inside glibc's heaps back to the system (malloc_trim(0));
    False where there is no glibc. ctypes lets go of the GIL meanwhile."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
