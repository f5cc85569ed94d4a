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
a full collection would have left them. The young collections go on meanwhile, and what
survives each is frozen at once, so that no middle collection walks those live objects again;
the hold ends at the first collection past it.

While a fleet-wide batch level goes out and its agents answer (`defer`), a full collection waits
too: it would land in one of the level's turns, already the longest of the loop's, while every
API call and console waits behind them. It runs once the level is settled, at a moment its
caller picks (or at the next middle collection `DEFER_MAX` later), in a loop that has turns to
spare; its survivors are frozen then as usual.
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
DEFER_MAX = 10.0  # seconds: bulk work holds full collections at most this long at a time
TRIM_EVERY = 10.0  # seconds between two returns of glibc's free pages (`trim_periodically`)


class SurvivorFreezer:
    """A `gc.callbacks` hook: after each full collection, freeze its survivors; past `GROWTH`
    unfreeze everything instead, so that the next full collection walks it all once."""

    def __init__(self, interval: float = WALK_INTERVAL, walked: int | None = None) -> None:
        self.interval = interval
        # Frozen objects after the last full walk (counting them walks them all).
        self.walked = gc.get_freeze_count() if walked is None else walked
        self.walked_at = time.monotonic()
        self.full_walk_pending = False
        self.full_walks = 0
        self.next_count = 0.0  # monotonic time before which the frozen set is not counted
        self.held_since = 0.0  # monotonic time the current hold began; 0: none
        self.held_until = 0.0
        self.holds = 0
        self.may_hold = True  # a full collection ran since the last hold (or none was held)
        self.deferred_since = 0.0  # monotonic time bulk work began holding full collections
        self.deferred_until = 0.0  # monotonic time it holds them to; 0: none
        self.may_defer = True  # a full collection ran since the last deferral (or none was)
        self._old_threshold = 0

    def _gate(self) -> None:
        """Generation 2's threshold: NEVER while a greeting burst or bulk work holds full
        collections, else the one they found."""
        young, middle, old = gc.get_threshold()
        held = bool(self.held_since or self.deferred_until)
        if held and old != NEVER:
            self._old_threshold = old
            gc.set_threshold(young, middle, NEVER)
        elif not held and old == NEVER:
            gc.set_threshold(young, middle, self._old_threshold)

    def defer(self, seconds: float = DEFER_MAX) -> None:
        """Bulk work an operator waits on is under way (a fleet-wide batch level): no full
        collection until `resume`, at most `seconds` from now (checked at each middle
        collection), and `DEFER_MAX` in all: bulk work that goes on (one level after another)
        does not hold every full collection off, the next deferral waits for one to run.
        Nothing is frozen at its end: the full collection it held runs then, when due."""
        now = time.monotonic()
        if not self.deferred_since:
            if not self.may_defer:
                return
            self.deferred_since = now
        self.deferred_until = min(
            max(self.deferred_until, now + seconds), self.deferred_since + DEFER_MAX
        )
        self._gate()

    def resume(self, collect: bool = False) -> None:
        """The bulk work is done: full collections run again. `collect`: the one held off, if
        it came due meanwhile, runs now (the caller's moment is a quiet one; never from a
        collector's callback), else the next one runs when it is due."""
        if self.deferred_since:
            self.deferred_since = self.deferred_until = 0.0
            self._gate()
            # Held off one (or may have): the next deferral waits for a full collection.
            self.may_defer = collect
            if collect and gc.get_count()[2] > gc.get_threshold()[2]:
                gc.collect()  # the freezer's hook freezes its survivors

    def hold(self, quiet: float = QUIET) -> None:
        """Agents are greeting in bulk: no full collection until `quiet` seconds pass without
        another call (and at most `MAX_HOLD` seconds in all)."""
        now = time.monotonic()
        if not self.held_since:
            if self.full_walk_pending or not self.may_hold:
                return  # a full collection first (the walk of everything, when due)
            self.held_since = now
            self.holds += 1
            self._gate()
        self.held_until = min(now + quiet, self.held_since + MAX_HOLD)

    def release(self) -> None:
        """The burst is over: its survivors are frozen, and full collections run again."""
        if not self.held_since:
            return
        self.held_since = self.held_until = 0.0
        self.may_hold = False  # greetings that go on do not hold every full collection off
        self._gate()
        gc.freeze()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop":
            return
        generation = info["generation"]
        if self.deferred_until and generation and time.monotonic() >= self.deferred_until:
            self.resume()  # bulk work that did not say it ended: held long enough
        if self.held_since:
            # The burst's young survivors are live (sockets, links, series): each collection's
            # are frozen at once, so no middle collection walks them a second time (freezing
            # also leaves no middle collection due: the hold ends at a young one). Checked at
            # the collections the burst's own work causes.
            if time.monotonic() >= self.held_until:
                self.release()
            else:
                gc.freeze()
        if generation != 2:
            return
        self.may_hold = self.may_defer = True
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


def settle_heap(
    interval: float = WALK_INTERVAL, collect: bool = True, walked: int | None = None
) -> SurvivorFreezer:
    """Once start-up is done: leave what it built out of every later collection (it lives as
    long as the process), and from then on freeze each full collection's survivors.
    `collect=False`: frozen as it is (its garbage was collected already, before the loop took
    callers: a collection now would hold them all). `walked`: the frozen set as counted then
    (`frozen_count`; a count now would walk all of it while the fleet reconnects)."""
    global _freezer
    if collect:
        gc.collect()
    gc.freeze()
    for hook in [h for h in gc.callbacks if isinstance(h, SurvivorFreezer)]:
        hook.release()
        hook.resume()
        gc.callbacks.remove(hook)  # settled again (tests): one hook
    _freezer = freezer = SurvivorFreezer(interval, walked)
    gc.callbacks.append(freezer)
    return freezer


def defer_full_collections(seconds: float = DEFER_MAX) -> None:
    """Bulk work an operator waits on begins: `SurvivorFreezer.defer` (nothing before
    `settle_heap`)."""
    if _freezer is not None and _freezer in gc.callbacks:
        _freezer.defer(seconds)


def resume_full_collections() -> None:
    """The bulk work `defer_full_collections` announced is done: the full collection it held
    off runs now if it came due (call it at a quiet moment)."""
    if _freezer is not None and _freezer in gc.callbacks:
        _freezer.resume(collect=True)


def frozen_count() -> int:
    """Collect and freeze start-up's objects, and count them (a walk of them all): done before
    the loop takes callers, for `settle_heap(walked=...)` once it serves."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def greeting() -> None:
    """An agent greets this master: full collections wait for the end of the burst (nothing
    before `settle_heap`, so tests and tools that import the services change no setting)."""
    if _freezer is not None and _freezer in gc.callbacks:
        _freezer.hold()


async def trim_periodically(every: float = TRIM_EVERY) -> None:
    """Every `every` seconds, give glibc's free pages back (malloc_trim(0)), in a worker thread.

    glibc returns only the top of a heap past its trim threshold; the blocks freed inside it
    keep their pages, and a master's bursts (a fleet connecting, a take-over) leave many such
    blocks (bench.master_memory --postgres --trim; figures in bench/RESULTS.md). The agents'
    frames refill them soon, hence a short period; ctypes lets go of the GIL for the call.
    """
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(malloc_trim)
