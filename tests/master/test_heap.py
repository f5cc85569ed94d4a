"""The master's garbage-collector settings, applied once start-up is done."""

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from master import heap
from master.heap import GROWTH, MAX_HOLD, NEVER, SurvivorFreezer, greeting, settle_heap


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


def _counts_after_five_full_collections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per count of the frozen set (`gc.get_freeze_count`) over five full collections."""
    counts: list[int] = []
    real = gc.get_freeze_count

    def counted() -> int:
        counts.append(1)
        return real()

    monkeypatch.setattr(gc, "get_freeze_count", counted)
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
    gc.collect(0)
    assert gc.get_threshold()[2] == NEVER  # the youngest generation alone: still held
    before = gc.get_freeze_count()
    gc.collect(1)  # a middle collection, as the burst's own work causes
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
