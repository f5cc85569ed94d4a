"""Benchmarks only (bench/master_memory.py puts this folder on a master's PYTHONPATH).

On SIGUSR2 the process calls glibc's malloc_trim(0) (what RSS a trim would give back).
On SIGUSR1 the process writes what its Python heap holds to $GDOS_BENCH_HEAP_REPORT (JSON):
tracemalloc's top allocations by file and by line when tracing (PYTHONTRACEMALLOC), and the
objects the collector tracks, counted by type (with their shallow sizes), and glibc malloc's
totals.
"""

import contextlib
import ctypes
import os
import signal
import sys

_REPORT = os.environ.get("GDOS_BENCH_HEAP_REPORT")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> dict[str, int]:
    """glibc's totals over every arena: `arena` bytes taken from the system by brk/mmap'd
    arenas, `uordblks` in use, `fordblks` free inside them, `hblkhd` in large mmap'd blocks."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _Mallinfo2
    info = fn()
    return {field[0]: getattr(info, field[0]) for field in _Mallinfo2._fields_}


def _sqlite_memory() -> dict[str, int]:
    """SQLite's own heap (page caches, prepared statements) over every connection: now, peak."""
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")
    except OSError:
        return {}
    for name in ("sqlite3_memory_used", "sqlite3_memory_highwater"):
        getattr(lib, name).restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return {"used": lib.sqlite3_memory_used(), "highwater": lib.sqlite3_memory_highwater(0)}


def _malloc_info(path: str) -> None:
    """glibc's per-arena XML (malloc_info) written to `path`."""
    try:
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        stream = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
    except (OSError, AttributeError):
        pass


def _report(_signum: int, _frame: object) -> None:
    import collections
    import gc
    import json
    import tracemalloc

    out: dict[str, object] = {}
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        for key in ("filename", "lineno"):
            stats = snap.statistics(key)
            out[key] = [[str(s.traceback[0]), s.size, s.count] for s in stats[:60]]
        out["traced_bytes"] = tracemalloc.get_traced_memory()[0]
    out["allocated_blocks"] = sys.getallocatedblocks()
    out["modules"] = sorted(sys.modules)
    out["mallinfo2"] = _mallinfo2()
    out["sqlite"] = _sqlite_memory()
    if _REPORT is not None:
        _malloc_info(_REPORT + ".malloc.xml")
    types: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    frames: collections.Counter[str] = collections.Counter()
    for o in gc.get_objects():
        name = type(o).__name__
        types[name] += 1
        sizes[name] += sys.getsizeof(o)
        if name in ("coroutine", "generator", "async_generator"):
            code = getattr(o, "cr_code", None) or getattr(o, "gi_code", None)
            code = code or getattr(o, "ag_code", None)
            if code is not None:
                frames[f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_qualname}"] += 1
    out["frames"] = frames.most_common(60)
    out["gc_objects"] = sum(types.values())
    out["gc_types"] = [(name, count, sizes[name]) for name, count in types.most_common(40)]
    assert _REPORT is not None
    with open(_REPORT + ".tmp", "w") as sink:
        json.dump(out, sink)
    os.replace(_REPORT + ".tmp", _REPORT)


def _trim(_signum: int, _frame: object) -> None:
    """glibc's malloc_trim(0): free pages inside its arenas go back to the system."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


if _REPORT:
    signal.signal(signal.SIGUSR1, _report)
    signal.signal(signal.SIGUSR2, _trim)
