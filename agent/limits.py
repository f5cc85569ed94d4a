"""Process limits the agent raises for itself at start."""

import logging
import os

from protocol.allocator import M_ARENA_MAX, M_MMAP_THRESHOLD, mallopt

log = logging.getLogger(__name__)

WANTED_OPEN_FILES = 65_536


def raise_open_files(wanted: int = WANTED_OPEN_FILES) -> int | None:
    """Raise the soft open-file limit towards `wanted` (within the hard limit); returns the new
    soft limit, or None where there is none to raise (Windows).

    systemd and most shells start services with a soft limit of 1,024, and an agent keeps a
    pidfd per supervised process and /proc descriptors beside it: at 1,000 services it would
    run out. Its services inherit the raised limit, as they would from systemd's `LimitNOFILE`.
    """
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # e.g. a sandbox that refuses
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    log.debug("open-file limit raised from %d to %d", soft, target)
    return target


MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept instead of raised


def few_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas before any thread starts. It gives each thread that allocates
    an arena of its own, kept after the thread's burst: a deploy's download and unpacking
    threads left several MiB there. The agent's threads mostly wait on I/O, so two do; ctypes
    costs far less. MALLOC_ARENA_MAX, when set, is left to glibc. False where nothing was set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return mallopt(M_ARENA_MAX, arenas)


def steady_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Keep glibc mapping blocks of `size` bytes and more on their own, returned to the system
    when freed. By default glibc raises that threshold to the largest mapped block freed so far
    (and the trim threshold to twice that): after a deploy's large blocks (state-file snapshots,
    package reads) later ones came from the heap and left it several MiB larger for good.
    MALLOC_MMAP_THRESHOLD_, when set, is left to glibc. False where nothing was set."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    return mallopt(M_MMAP_THRESHOLD, size)
