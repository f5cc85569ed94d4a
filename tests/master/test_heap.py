"""The master's garbage-collector settings, applied once start-up is done."""

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from master import heap
from master.heap import (
    DEFER_MAX,
    GROWTH,
    MAX_HOLD,
    NEVER,
    SurvivorFreezer,
    defer_full_collections,
    frozen_count,
    greeting,
    resume_full_collections,
    settle_heap,
)


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Only the tests' own collections run (an automatic one would move the counts)."""
    enabled = gc.isenabled()
    threshold = gc.get_threshold()
    gc.disable()
    yield
    gc.callbacks[:] = [h for h in gc.callbacks if not isinstance(h, SurvivorFreezer)]
    heap._freezer = None
    gc.set_threshold(*threshold)
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_start_up_objects_are_frozen_and_later_ones_collected(restored_gc: None) -> None:
    built_at_start_up = {"a": [1, 2, 3]}
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(o is built_at_start_up for o in gc.get_objects())  # out of every collection
    made_after = {"b": [4]}
    assert any(o is made_after for o in gc.get_objects())  # collected as usual


def test_a_full_collection_freezes_its_survivors(restored_gc: None) -> None:
    settle_heap()
    before = gc.get_freeze_count()
    survivors = [[n] for n in range(1000)]  # lists: always tracked
    gc.collect()  # a full collection: what it leaves alive is not walked again
    assert gc.get_freeze_count() >= before + 1000
    assert not any(o is survivors[0] for o in gc.get_objects())


def test_dead_cycles_among_frozen_objects_are_collected_once_the_frozen_set_grows(
    restored_gc: None,
) -> None:
    freezer = settle_heap(interval=0)
    cycle: list[object] = []
    cycle.append(cycle)
    probe = weakref.ref(_Node(cycle))
    gc.collect()  # the cycle survives this one: frozen with the rest
    frozen = gc.get_freeze_count()
    del cycle
    gc.collect()
    assert probe() is not None  # frozen: a full collection does not walk it
    grown = [[n] for n in range(int(frozen * (GROWTH - 1)) + 1000)]
    gc.collect()  # past GROWTH: everything is unfrozen for the next full collection
    assert freezer.full_walk_pending
    gc.collect()
    assert probe() is None  # the dead cycle is gone
    assert freezer.full_walks == 1 and not freezer.full_walk_pending
    del grown


def test_no_full_walk_before_the_interval_however_the_frozen_set_grows(
    restored_gc: None,
) -> None:
    freezer = settle_heap(interval=3600)  # a reconnect storm's objects are live: no walk then
    grown = [[n] for n in range(int(gc.get_freeze_count() * GROWTH) + 1000)]
    gc.collect()
    gc.collect()
    assert not freezer.full_walk_pending and freezer.full_walks == 0
    assert not any(o is grown[0] for o in gc.get_objects())  # frozen all the same


def _freeze_counts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, one entry per count of the frozen set (`gc.get_freeze_count`)."""
    counts: list[int] = []
    real = gc.get_freeze_count

    def counted() -> int:
        counts.append(1)
        return real()

    monkeypatch.setattr(gc, "get_freeze_count", counted)
    return counts


def _counts_after_five_full_collections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per count of the frozen set over five full collections."""
    counts = _freeze_counts(monkeypatch)
    for _ in range(5):
        gc.collect()
    return counts


def test_full_collections_do_not_count_the_frozen_set_before_the_interval(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting the frozen set walks all of it: a take-over's full collections, one after
    another, must not each pay that walk (the freezing is there to avoid it)."""
    settle_heap(interval=3600)
    counts = _counts_after_five_full_collections(monkeypatch)
    assert counts == []


def test_past_the_interval_the_frozen_set_is_counted_at_most_every_count_every(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    freezer = settle_heap(interval=3600)
    freezer.walked_at -= 3600  # the interval has passed
    counts = _counts_after_five_full_collections(monkeypatch)
    assert counts == [1]  # once, then not before COUNT_EVERY
    assert not freezer.full_walk_pending


def test_serving_does_not_count_the_frozen_set_counted_before(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count walks every frozen object: at serving it held the loop's first turn of the
    reconnect storm; counted before the loop takes callers, it is only handed over."""
    built_at_start_up = [[n] for n in range(1000)]
    frozen = frozen_count()
    assert frozen == gc.get_freeze_count() and frozen >= 1000
    assert not any(o is built_at_start_up[0] for o in gc.get_objects())
    counts = _freeze_counts(monkeypatch)
    freezer = settle_heap(collect=False, walked=frozen)
    assert counts == [] and freezer.walked == frozen


def test_a_greeting_burst_holds_full_collections_then_freezes_its_survivors(
    restored_gc: None,
) -> None:
    """Agents reconnecting in bulk: their objects are live, and a full collection in the middle
    of the burst would walk them all with the loop held."""
    threshold = gc.get_threshold()
    freezer = settle_heap()
    greeting()
    assert gc.get_threshold() == (*threshold[:2], NEVER)  # no full collection while held
    burst = [[n] for n in range(1000)]
    cycle: list[object] = []
    cycle.append(cycle)
    probe = weakref.ref(_Node(cycle))
    del cycle  # garbage of the burst: a young collection finds it
    freezer.hold(quiet=0)  # the last greeting: the burst ends at the next collection
    before = gc.get_freeze_count()
    gc.collect(0)  # a young collection, as the burst's own work causes
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() >= before + 1000  # frozen as a full collection leaves them
    assert not any(o is burst[0] for o in gc.get_objects())
    assert probe() is None  # collected, not frozen
    assert freezer.holds == 1
    greeting()
    assert gc.get_threshold() == threshold  # a full collection first, then the next hold
    gc.collect()
    greeting()
    assert gc.get_threshold()[2] == NEVER and freezer.holds == 2


def test_young_survivors_are_frozen_only_while_a_burst_holds(restored_gc: None) -> None:
    """In a reconnect storm each middle collection walked the young collections' survivors
    again (10,000-17,000 live objects, tens of ms with the loop held): while agents greet in
    bulk they are frozen at once; otherwise young survivors age as CPython's collector has it."""
    freezer = settle_heap()
    before = gc.get_freeze_count()
    quiet = [[n] for n in range(1000)]
    gc.collect(0)
    assert gc.get_freeze_count() == before  # no burst: not frozen
    assert any(o is quiet[0] for o in gc.get_objects(1))  # aged into the middle generation
    greeting()
    burst = [[n] for n in range(1000)]
    gc.collect(0)
    assert gc.get_freeze_count() >= before + 2000  # all that survived, the burst's with it
    assert not gc.get_objects(1) and not any(o is burst[0] for o in gc.get_objects())
    assert freezer.held_since  # a young collection before the burst's end does not end it
    freezer.hold(quiet=0)
    gc.collect(0)  # with nothing left for a middle collection, a young one ends the hold
    assert not freezer.held_since and gc.get_threshold()[2] != NEVER


def test_a_hold_lasts_at_most_max_hold_however_agents_keep_greeting(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("master.heap.time.monotonic", lambda: now[0])
    threshold = gc.get_threshold()
    settle_heap()
    for _ in range(int(MAX_HOLD) + 5):  # a greeting every second, for longer than a hold
        greeting()
        now[0] += 1.0
        gc.collect(1)
        if gc.get_threshold() == threshold:
            break
    assert gc.get_threshold() == threshold
    assert now[0] - 1000.0 <= MAX_HOLD + 1


def test_greetings_change_no_setting_before_the_heap_is_settled(restored_gc: None) -> None:
    """Tests and tools that run the services in their own process keep their collector."""
    threshold = gc.get_threshold()
    greeting()
    assert gc.get_threshold() == threshold


def test_bulk_work_defers_full_collections_and_its_end_runs_the_one_that_came_due(
    restored_gc: None,
) -> None:
    """A fleet-wide batch level: a full collection would land in its turns; it runs at the
    moment its end is announced instead, and its survivors are frozen as usual."""
    threshold = gc.get_threshold()
    settle_heap()
    defer_full_collections()
    assert gc.get_threshold() == (*threshold[:2], NEVER)
    for _ in range(threshold[2] + 1):
        gc.collect(1)  # middle collections as the level's work causes: none goes on to full
    assert gc.get_threshold()[2] == NEVER
    survivor = [[n] for n in range(100)]
    before = gc.get_freeze_count()
    resume_full_collections()
    assert gc.get_threshold() == threshold
    assert gc.get_count()[2] == 0  # the full collection that came due ran
    assert gc.get_freeze_count() >= before + 100 and survivor
    defer_full_collections()  # the next level defers again: nothing was starved
    assert gc.get_threshold()[2] == NEVER
    resume_full_collections()
    assert gc.get_threshold() == threshold


def test_bulk_work_that_goes_on_holds_full_collections_at_most_defer_max(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("master.heap.time.monotonic", lambda: now[0])
    threshold = gc.get_threshold()
    settle_heap()
    for _ in range(int(DEFER_MAX) + 5):  # one level after another, never announced as done
        defer_full_collections()
        now[0] += 1.0
        gc.collect(1)
        if gc.get_threshold() == threshold:
            break
    assert gc.get_threshold() == threshold
    assert now[0] - 1000.0 <= DEFER_MAX + 1
    defer_full_collections()  # no full collection since: this one does not hold it off
    assert gc.get_threshold() == threshold
    gc.collect()
    defer_full_collections()
    assert gc.get_threshold()[2] == NEVER


def test_a_deferral_and_a_greeting_burst_both_end_before_full_collections_run(
    restored_gc: None,
) -> None:
    threshold = gc.get_threshold()
    freezer = settle_heap()
    defer_full_collections()
    greeting()
    resume_full_collections()
    assert gc.get_threshold()[2] == NEVER  # the burst still holds them
    freezer.hold(quiet=0)
    gc.collect(1)
    assert gc.get_threshold() == threshold


def test_deferrals_change_no_setting_before_the_heap_is_settled(restored_gc: None) -> None:
    threshold = gc.get_threshold()
    defer_full_collections()
    assert gc.get_threshold() == threshold
    resume_full_collections()


class _Node:
    """Something a weak reference can point at, kept alive only by a cycle."""

    def __init__(self, cycle: list[object]) -> None:
        cycle.append(self)


TRIM_PROBE = """
from pathlib import Path
from master.server import tune_allocator
from protocol.allocator import malloc_trim

def rss():
    return int(Path('/proc/self/status').read_text().split('VmRSS:')[1].split()[0]) >> 10

tune_allocator()  # the master's thresholds: 8 MiB of free heap top kept, blocks to 4 MiB inside
blocks = [bytes(4000) for _ in range(12_000)]  # 46 MiB of blocks glibc (not pymalloc) serves
kept = blocks[::16]  # what lives on is scattered over the whole heap: nothing at its top to cut
del blocks
before = rss()
trimmed = malloc_trim()
print(trimmed, before - rss())
"""


def test_a_trim_gives_back_the_pages_of_blocks_freed_inside_the_heap() -> None:
    import platform
    import subprocess
    import sys
    from pathlib import Path

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) >= 30  # MiB: most of the 43 MiB freed, in pages between the kept blocks


async def test_the_heap_is_trimmed_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    trims: list[float] = []

    def trim() -> bool:
        trims.append(time.monotonic())
        return True

    monkeypatch.setattr(heap, "malloc_trim", trim)
    task = asyncio.create_task(heap.trim_periodically(0.02))
    try:
        for _ in range(500):
            if len(trims) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert len(trims) >= 3
