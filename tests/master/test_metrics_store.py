"""The in-memory metrics store: bounded memory, per-second then per-minute resolution, a cap."""

import math
import random
import time
from array import array

import pytest

from master.services.metrics import INSTANCE_WIDTH, SCALES, MetricsStore, Series

T0 = 1_800_000_000 - 1_800_000_000 % 60  # a minute boundary


def feed(series: Series, seconds: range, value=lambda s: float(s - T0)) -> None:
    for sec in seconds:
        series.add(sec, [value(sec)] * 2)


def test_memory_stops_growing_once_the_rings_wrap():
    store = MetricsStore(recent_seconds=120, history_minutes=10, max_series=20)

    def quarter_hour(start: int) -> None:
        for sec in range(start, start + 900):
            for i in range(20):
                store.add(f"i:{i}", INSTANCE_WIDTH, sec, [sec % 97, 1e8, 5.0, 6.0, 7.0])

    quarter_hour(T0 + 1)  # warm-up: wraps both rings
    before = store.allocated_bytes()
    quarter_hour(T0 + 901)
    after = store.allocated_bytes()
    assert after < before * 1.05, f"grew from {before} to {after} bytes over 15 minutes"
    assert after < store.ceiling_bytes() / 4  # compact: a quarter of the ceiling at most


def test_series_cap_evicts_the_stalest():
    store = MetricsStore(recent_seconds=10, history_minutes=2, max_series=3)
    for key in ("i:a", "i:b", "i:c"):
        store.add(key, 2, T0, [1.0, 1.0])
    store.add("i:a", 2, T0 + 1, [2.0, 2.0])  # a is fresh again; b is now the stalest
    store.add("i:d", 2, T0 + 1, [3.0, 3.0])
    assert [k for k, _ in store.items()] == ["i:c", "i:a", "i:d"]
    assert store.evicted == 1 and len(store) == 3
    assert store.ceiling_bytes() == 3 * Series.ceiling(6, 10, 2)


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
    minute = s.coarse.rows(0, T0)
    assert len(minute) == 1 and math.isclose(minute[0][1], (59 * 10 + 30) / 60, rel_tol=1e-6)


def test_samples_older_than_the_ring_are_dropped():
    store = MetricsStore(recent_seconds=60, history_minutes=2, max_series=5)
    store.add("n:x", 2, T0 + 100, [1.0, 1.0])
    store.add("n:x", 2, T0 + 30, [9.0, 9.0])
    assert store.dropped_old == 1
    series = store.get("n:x")
    assert series is not None and series.read(T0) == [(T0 + 100, [1.0, 1.0])]


def test_compact_rings_return_what_was_put_in_across_wraparound():
    # Kept precision: what the API shows (cpu to 0.01, the rest as integers) once a block closes;
    # the open block and the minute averages' inputs are the float32 samples themselves.
    rng = random.Random(7)
    s = Series(INSTANCE_WIDTH, 120, 6, scales=SCALES[INSTANCE_WIDTH])
    put: dict[int, list[float]] = {}
    sec = T0
    for _ in range(1500):  # about 25 minutes: both rings wrap several times
        sec += 1 if rng.random() > 0.05 else rng.randrange(2, 90)  # gaps, some past a block
        values = [rng.random() * 400, rng.randrange(1 << 40) + 0.5, 0.0, rng.random() * 1e6, 12]
        s.add(sec, values)
        put[sec] = list(array("f", values))  # what float32 holds
    recent = s.read(sec - 119)
    assert [ts for ts, _ in recent] == sorted(t for t in put if t > sec - 120)
    for ts, got in recent:
        want = put[ts]
        assert round(got[0], 2) == round(want[0], 2) and abs(got[0] - want[0]) <= 0.005 + 1e-9
        assert [int(v) for v in got[1:]] == [int(v) for v in want[1:]]
    minutes = [(ts, v) for ts, v in s.read(sec - 6 * 60) if ts < sec - 119]
    assert minutes, "the history ring holds minutes before the recent window"
    for ts, got in minutes:
        rows = [put[t] for t in range(ts, ts + 60) if t in put]
        want = [float(array("f", [sum(c) / len(rows)])[0]) for c in zip(*rows, strict=True)]
        assert round(got[0], 2) == round(want[0], 2)
        assert [int(v) for v in got[1:]] == [int(v) for v in want[1:]]


def test_figures_too_large_to_encode_are_kept_raw():
    s = Series(2, 60, 5)
    for sec in range(T0, T0 + 130):
        s.add(sec, [3e38 if sec % 2 else 1.5, 7.0])
    rows = s.read(T0 + 70)
    assert [ts for ts, _ in rows] == list(range(T0 + 70, T0 + 130))
    assert all(v == [float(array("f", [3e38])[0]) if ts % 2 else 1.5, 7.0] for ts, v in rows)


def test_a_node_near_the_skew_limit_is_stamped_by_one_clock_until_it_is_close_again(monkeypatch):
    """Samples of a node whose clock (or backlog) sits near the skew limit would alternate between
    its clock and the master's, and every other one would land behind the newest row."""
    from master.hub import Hub
    from master.services import metrics
    from master.services.directory import Directory
    from protocol.messages import Metrics

    hub = Hub()
    svc = metrics.MetricsService(MetricsStore(), Directory(hub), hub)
    now = [float(T0 + 1000)]
    monkeypatch.setattr(metrics.time, "time", lambda: now[0])
    stored = []
    for step, behind in enumerate([31, 29, 29.5, 16, 14, 2, 31, 20]):
        now[0] += 1
        msg = Metrics(ts=now[0] - behind, node=[1.0, 2.0, 3.0, 4.0, 5.0, float(step)])
        svc.ingest("n1", msg)
        at = [sec for sec, v in svc.store.get("n:n1").read(T0) if v[5] == step]
        stored.append(at[0] - now[0])
    # The master's clock from the first breach until the node is within half the limit again.
    assert stored == [0, 0, 0, 0, -14, -2, 0, 0]


def test_series_share_their_block_numbers_and_read_back_the_same_rows():
    from master.services import metrics_ring

    store = MetricsStore(recent_seconds=120, history_minutes=10, max_series=50)
    for sec in range(T0 + 1, T0 + 400):
        for i in range(50):
            store.add(f"i:{i}", INSTANCE_WIDTH, sec, [sec % 97, 1e8, 5.0, 6.0, 7.0])
    held: dict[int, int] = {}  # a number -> the object every ring holding it holds
    pairs = 0
    for _, series in store.items():
        for ring in (series, series.coarse):
            for number in (ring.start, ring.end, ring.last_k, ring.base_k):
                pairs += number in held
                assert held.setdefault(number, number) is number
    assert pairs > 100  # the series shared numbers: the check above compared objects
    first = store.get("i:0")
    assert first is not None
    want = first.read(T0)
    for n in range(metrics_ring.SHARED_MAX + 10):  # the table is bounded: cleared, then refilled
        metrics_ring.shared(T0 * 7 + n)
    assert len(metrics_ring._SHARED) <= metrics_ring.SHARED_MAX
    for sec in range(T0 + 400, T0 + 460):
        store.add("i:0", INSTANCE_WIDTH, sec, [sec % 97, 1e8, 5.0, 6.0, 7.0])
    recent = first.read(T0 + 340)  # the recent window: one row a second, across the clear
    assert [(sec, row[0]) for sec, row in recent] == [
        (sec, float(sec % 97)) for sec in range(T0 + 340, T0 + 460)
    ]
    assert first.read(T0)[:3] == want[:3]  # the minutes before it


def test_a_nodes_rows_reach_their_series_after_evictions_moves_and_reordering(monkeypatch):
    """Ingest keeps each node's row order and series between messages: a series evicted or
    dropped, an instance moved to another node or rows in another order must not send a row
    to a stale or wrong series."""
    from master.hub import Hub
    from master.services import metrics
    from master.services.directory import Directory, InstanceInfo
    from protocol.messages import Metrics

    hub = Hub()
    directory = Directory(hub)
    for iid in ("a", "b", "c"):
        directory._put(InstanceInfo(iid, "n1", "s", iid, "running"))
    svc = metrics.MetricsService(MetricsStore(max_series=3), directory, hub)
    now = [float(T0 + 1000)]
    monkeypatch.setattr(metrics.time, "time", lambda: now[0])

    def send(*ids: str) -> None:
        now[0] += 1
        rows = [(iid, float(ord(iid)), 1.0, 2.0, 3.0, now[0] - T0) for iid in ids]
        svc.ingest("n1", Metrics(ts=now[0], instances=rows))

    def newest(iid: str) -> list[float] | None:
        found = svc.latest(metrics.instance_key(iid))
        return None if found is None else found[1]

    send("a", "b", "c")
    send("a", "b", "c")
    assert newest("a") == [ord("a"), 1.0, 2.0, 3.0, now[0] - T0]
    send("c", "b", "a")  # another order: each row still to its own series
    assert [newest(i)[0] for i in "abc"] == [ord(i) for i in "abc"]
    hub.publish("instance", {"id": "b", "deleted": True})  # its series goes
    directory.remove_instance("b")
    send("c", "a")
    assert newest("b") is None and newest("a")[4] == now[0] - T0
    # A new instance evicts the stalest series at the cap of 3 ("a": written least recently).
    directory._put(InstanceInfo("d", "n1", "s", "d", "running"))
    send("c", "d")
    send("c", "d", "e")  # "e" is not the node's: rejected, not stored
    assert newest("e") is None and svc.rejected == 1
    send("a", "c", "d")  # "a" was evicted by "d"'s series: a new series, and a row in it
    assert newest("a")[4] == now[0] - T0 and newest("d")[4] == now[0] - T0
    directory._put(InstanceInfo("c", "n2", "s", "c", "running"))  # moved to another node
    send("a", "c", "d")
    assert newest("c")[4] == now[0] - T0 - 1 and svc.rejected == 2


def test_a_series_evicted_by_another_nodes_rows_is_made_again_for_the_same_rows(monkeypatch):
    from master.hub import Hub
    from master.services import metrics
    from master.services.directory import Directory, InstanceInfo
    from protocol.messages import Metrics

    hub = Hub()
    directory = Directory(hub)
    for iid, node in (("a", "n1"), ("x", "n2"), ("y", "n2"), ("z", "n2")):
        directory._put(InstanceInfo(iid, node, "s", iid, "running"))
    store = MetricsStore(max_series=3)
    svc = metrics.MetricsService(store, directory, hub)
    # "a"'s rows in one block: a block that opens renews a series' recency, and where blocks begin
    # depends on the key's hash (one run in 20 crossed one between the two rows below).
    block = metrics.Series(metrics.INSTANCE_WIDTH, store.fine_slots, store.coarse_slots).spec.rows
    first = T0 + 1000
    while (first + 1 - hash(metrics.instance_key("a")) % 60) % block > block - 3:
        first += 1
    now = [float(first)]
    monkeypatch.setattr(metrics.time, "time", lambda: now[0])

    def send(node: str, *ids: str) -> None:
        rows = [(iid, 1.0, 1.0, 2.0, 3.0, now[0] - T0) for iid in ids]
        svc.ingest(node, Metrics(ts=now[0], instances=rows))

    for _ in range(2):
        now[0] += 1
        send("n1", "a")
        send("n2", "x", "y")
    send("n2", "z")  # a fourth series: "a", the stalest, is evicted
    assert svc.latest(metrics.instance_key("a")) is None
    now[0] += 1
    send("n1", "a")  # the same rows as before: stored all the same
    assert svc.latest(metrics.instance_key("a")) == (int(now[0]), [1.0, 1.0, 2.0, 3.0, now[0] - T0])


def test_news_of_a_node_lets_go_of_the_series_kept_for_its_rows():
    """An offline node sends no more rows: what ingest kept for them must not keep its series
    alive once the store evicts them."""
    from master.hub import Hub
    from master.services import metrics
    from master.services.directory import Directory, InstanceInfo
    from protocol.messages import Metrics

    hub = Hub()
    directory = Directory(hub)
    directory._put(InstanceInfo("a", "n1", "s", "a", "running"))
    svc = metrics.MetricsService(MetricsStore(), directory, hub)
    svc.ingest("n1", Metrics(ts=time.time(), instances=[("a", 1.0, 2.0, 3.0, 4.0, 5.0)]))
    assert svc._rows["n1"].series == (svc.store.get(metrics.instance_key("a")),)
    hub.publish("node", {"id": "n1", "status": "online", "load": {}})  # its load: kept
    assert "n1" in svc._rows
    hub.publish("node", {"id": "n1", "status": "offline"})
    assert "n1" not in svc._rows
