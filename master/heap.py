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
"""

import gc
import time
from typing import Any

GROWTH = 1.5  # the frozen set may grow by half (new live objects or dead cycles) between walks
WALK_INTERVAL = 600.0  # seconds: at most one full walk of everything in this time
COUNT_EVERY = 60.0  # seconds between counts of the frozen set past the interval


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

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
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


def settle_heap(interval: float = WALK_INTERVAL) -> SurvivorFreezer:
    """Once start-up is done: leave what it built out of every later collection (it lives as
    long as the process), and from then on freeze each full collection's survivors."""
    gc.collect()
    gc.freeze()
    for hook in [h for h in gc.callbacks if isinstance(h, SurvivorFreezer)]:
        gc.callbacks.remove(hook)  # settled again (tests): one hook
    freezer = SurvivorFreezer(interval)
    gc.callbacks.append(freezer)
    return freezer
