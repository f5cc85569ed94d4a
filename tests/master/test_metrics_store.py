"""The in-memory metrics store: fixed memory, per-second then per-minute resolution, a cap."""

import math
import tracemalloc

import pytest

from master.services.metrics import INSTANCE_WIDTH, MetricsStore, Series

T0 = 1_800_000_000 - 1_800_000_000 % 60  # a minute boundary


def feed(series: Series, seconds: range, value=lambda s: float(s - T0)) -> None:
    for sec in seconds:
        series.add(sec, [value(sec)] * 2)


def test_buffers_are_preallocated_and_never_grow():
    store = MetricsStore(recent_seconds=120, history_minutes=10, max_series=20)
    for i in range(20):
        store.add(f"i:{i}", INSTANCE_WIDTH, T0, [1.0] * INSTANCE_WIDTH)
    sizes = {key: (len(s.fine), len(s.coarse)) for key, s in store.items()}
    assert set(sizes.values()) == {(120 * INSTANCE_WIDTH, 10 * INSTANCE_WIDTH)}

    def quarter_hour(start: int) -> None:
        for sec in range(start, start + 900):
            for i in range(20):
                store.add(f"i:{i}", INSTANCE_WIDTH, sec, [sec % 97, 1e8, 5.0, 6.0, 7.0])

    quarter_hour(T0 + 1)  # warm-up: wraps both rings
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    quarter_hour(T0 + 901)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before < 16_000, f"grew by {after - before} bytes over 15 minutes of samples"
    assert {key: (len(s.fine), len(s.coarse)) for key, s in store.items()} == sizes
    assert store.allocated_bytes() == 20 * Series.nbytes(INSTANCE_WIDTH, 120, 10)


def test_series_cap_evicts_the_stalest():
    store = MetricsStore(recent_seconds=10, history_minutes=2, max_series=3)
    for key in ("i:a", "i:b", "i:c"):
        store.add(key, 2, T0, [1.0, 1.0])
    store.add("i:a", 2, T0 + 1, [2.0, 2.0])  # a is fresh again; b is now the stalest
    store.add("i:d", 2, T0 + 1, [3.0, 3.0])
    assert [k for k, _ in store.items()] == ["i:c", "i:a", "i:d"]
    assert store.evicted == 1 and len(store) == 3
    assert store.ceiling_bytes() == 3 * Series.nbytes(6, 10, 2)


@pytest.mark.parametrize("phase", [0, 17])
def test_recent_seconds_are_exact_and_older_minutes_are_averages(phase):
    # A series' minutes start at its own second (so series do not all close one together).
    s = Series(width=2, fine_slots=120, coarse_slots=60, phase=phase)
    feed(s, range(T0 + phase, T0 + phase + 600))  # ten minutes, value = seconds since T0
    rows = [(ts - phase, v) for ts, v in s.read(T0 + phase)]
    per_minute = [(ts, v) for ts, v in rows if ts < T0 + 600 - 120]
    per_second = [(ts, v) for ts, v in rows if ts >= T0 + 600 - 120]
    # The recent window (2 minutes) is every second, exactly.
    assert [ts for ts, _ in per_second] == list(range(T0 + 480, T0 + 600))
    assert all(v == [float(ts - T0 + phase)] * 2 for ts, v in per_second)
    # Before it, one sample per whole minute: the mean of that minute's 60 seconds.
    assert [ts for ts, _ in per_minute] == [T0 + 60 * m for m in range(8)]
    for ts, v in per_minute:
        assert v[0] == ts - T0 + phase + 29.5 and v[1] == v[0]


def test_gaps_are_not_invented_and_old_data_is_cleared():
    s = Series(width=2, fine_slots=60, coarse_slots=10)
    feed(s, range(T0, T0 + 10))
    feed(s, range(T0 + 20, T0 + 25))  # 10 seconds missing in between
    assert [ts for ts, _ in s.read(T0)] == [*range(T0, T0 + 10), *range(T0 + 20, T0 + 25)]
    feed(s, range(T0 + 500, T0 + 501))  # a silence longer than the ring
    assert [ts for ts, _ in s.read(T0 + 441)] == [T0 + 500]


def test_minute_history_skips_missing_minutes():
    s = Series(width=2, fine_slots=60, coarse_slots=30)
    feed(s, range(T0, T0 + 60), value=lambda _: 10.0)
    feed(s, range(T0 + 300, T0 + 420), value=lambda _: 20.0)  # minutes 1-4 never reported
    minutes = [(ts, v[0]) for ts, v in s.read(T0) if ts < T0 + 360]
    assert minutes == [(T0, 10.0), (T0 + 300, 20.0)]


def test_a_second_sample_in_the_same_second_replaces_the_first():
    s = Series(width=2, fine_slots=120, coarse_slots=5)
    s.add(T0, [10.0, 10.0])
    s.add(T0 + 1, [10.0, 10.0])
    s.add(T0 + 1, [30.0, 30.0])  # sub-second sampling: the last value of a second wins
    feed(s, range(T0 + 2, T0 + 60), value=lambda _: 10.0)
    s.add(T0 + 60, [0.0, 0.0])  # closes the minute
    assert s.read(T0 + 1)[0] == (T0 + 1, [30.0, 30.0])
    assert math.isclose(s.coarse[0], (59 * 10 + 30) / 60, rel_tol=1e-6)


def test_samples_older_than_the_ring_are_dropped():
    store = MetricsStore(recent_seconds=60, history_minutes=2, max_series=5)
    store.add("n:x", 2, T0 + 100, [1.0, 1.0])
    store.add("n:x", 2, T0 + 30, [9.0, 9.0])
    assert store.dropped_old == 1
    series = store.get("n:x")
    assert series is not None and series.read(T0) == [(T0 + 100, [1.0, 1.0])]
