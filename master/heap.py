"""The garbage collector's settings for a long-running master.

CPython's full collection walks every object the collector tracks and holds the event loop
meanwhile. A third of a master's objects are built at start-up (modules, the app, its routes)
and live as long as the process: walking them again at every full collection is waste. At
fleet scale the rest (sockets, series, directory entries) is as long-lived and as large, and a
full collection that walks it finds almost nothing: the survivors of each full collection are
frozen too, so the next one walks only what came since. Cycles among frozen objects that die
later are found by one full walk of everything once the frozen set has grown by `GROWTH` and
`WALK_INTERVAL` has passed (not in the middle of a reconnect storm, whose objects are live).
Counting the frozen set walks all of it (`gc.get_freeze_count`), as long as a full walk of
everything: it is counted only once that interval has passed, at most every `COUNT_EVERY`.

While agents reconnect in bulk (a restart, a take-over) no full collection runs at all: each
would walk the burst's new objects (sockets, links, series), nearly all of them live, with the
loop held in the middle of the storm. Full collections are held from the first greeting until
`QUIET` seconds pass without one (at most `MAX_HOLD`), then the burst's survivors are frozen as
a full collection would have left them; the young collections go on meanwhile.
"""

import asyncio
import gc
import time
from typing import Any

from protocol.allocator import malloc_trim

GROWTH = 1.5  # the frozen set may grow by half (new live objects or dead cycles) between walks
WALK_INTERVAL = 600.0  # seconds: at most one full walk of everything in this time
COUNT_EVERY = 60.0  # seconds between counts of the frozen set past the interval
QUIET = 2.0  # seconds without a greeting that end a reconnect burst
MAX_HOLD = 30.0  # seconds: full collections are held at most this long at a time
NEVER = 1 << 30  # a generation-2 threshold never reached
TRIM_EVERY = 10.0  # seconds between two returns of glibc's free pages (`trim_periodically`)


class SurvivorFreezer:
    """A `gc.callbacks` hook: after each full collection, freeze its survivors; past `GROWTH`
    unfreeze everything instead, so that the next full collection walks it all once."""

    def __init__(self, interval: float = WALK_INTERVAL) -> None:
        self.interval = interval
        self.walked = gc.get_freeze_count()  # frozen objects after the last full walk
        self.walked_at = time.monotonic()
        self.full_walk_pending = False
        self.full_walks = 0
        self.next_count = 0.0  # monotonic time before which the frozen set is not counted
        self.held_since = 0.0  # monotonic time the current hold began; 0: none
        self.held_until = 0.0
        self.holds = 0
        self.may_hold = True  # a full collection ran since the last hold (or none was held)
        self._old_threshold = 0

    def hold(self, quiet: float = QUIET) -> None:
        """Agents are greeting in bulk: no full collection until `quiet` seconds pass without
        another call (and at most `MAX_HOLD` seconds in all)."""
        now = time.monotonic()
        if not self.held_since:
            if self.full_walk_pending or not self.may_hold:
                return  # a full collection first (the walk of everything, when due)
            young, middle, self._old_threshold = gc.get_threshold()
            gc.set_threshold(young, middle, NEVER)
            self.held_since = now
            self.holds += 1
        self.held_until = min(now + quiet, self.held_since + MAX_HOLD)

    def release(self) -> None:
        """The burst is over: its survivors are frozen, and full collections run again."""
        if not self.held_since:
            return
        self.held_since = self.held_until = 0.0
        self.may_hold = False  # greetings that go on do not hold every full collection off
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, self._old_threshold)
        gc.freeze()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop":
            return
        generation = info["generation"]
        if self.held_since and generation and time.monotonic() >= self.held_until:
            # After a middle or full collection the young garbage is gone: what is left is
            # the burst's survivors. Checked at the collections the burst's own work causes.
            self.release()
        if generation != 2:
            return
        self.may_hold = True
        gc.freeze()
        if self.full_walk_pending:  # this collection walked everything
            self.full_walk_pending = False
            self.full_walks += 1
            self.walked = gc.get_freeze_count()
            self.walked_at = time.monotonic()
            return
        now = time.monotonic()
        # A take-over's storm runs full collections one after another: each counting millions
        # of frozen objects held the loop as long as a walk of them, which freezing avoids.
        if now - self.walked_at < self.interval or now < self.next_count:
            return
        self.next_count = now + min(self.interval, COUNT_EVERY)
        if gc.get_freeze_count() > self.walked * GROWTH:
            gc.unfreeze()
            self.full_walk_pending = True


_freezer: SurvivorFreezer | None = None  # this process's, once settled


def settle_heap(interval: float = WALK_INTERVAL, collect: bool = True) -> SurvivorFreezer:
    """Once start-up is done: leave what it built out of every later collection (it lives as
    long as the process), and from then on freeze each full collection's survivors.
    `collect=False`: frozen as it is (its garbage was collected already, before the loop took
    callers: a collection now would hold them all)."""
    global _freezer
    if collect:
        gc.collect()
    gc.freeze()
    for hook in [h for h in gc.callbacks if isinstance(h, SurvivorFreezer)]:
        hook.release()
        gc.callbacks.remove(hook)  # settled again (tests): one hook
    _freezer = freezer = SurvivorFreezer(interval)
    gc.callbacks.append(freezer)
    return freezer


def greeting() -> None:
    """An agent greets this master: full collections wait for the end of the burst (nothing
    before `settle_heap`, so tests and tools that import the services change no setting)."""
    if _freezer is not None and _freezer in gc.callbacks:
        _freezer.hold()


async def trim_periodically(every: float = TRIM_EVERY) -> None:
    """Every `every` seconds, give glibc's free pages back (malloc_trim(0)), in a worker thread.

    glibc returns only the top of a heap past its trim threshold; the blocks freed inside it
    keep their pages. After the bursts of a master's life (a fleet connecting, a take-over, frames
    queued while the loop is behind) 15-23 MiB of a PostgreSQL master's RSS with 1,000 nodes was
    such free space (bench.master_memory --postgres --trim). The agents' frames refill those
    holes as they come (a trim every 60 s was undone within the minute), hence a short period;
    a trim costs 0.1-2 ms of CPU, in a worker thread (ctypes lets go of the GIL).
    """
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(malloc_trim)
