"""The event loop's lag: samples kept in a ring, windowed by wall time, bucketed for the
Prometheus histogram, and served to benchmarks only when the master is asked to."""

import time

from master.services.loop_lag import BUCKETS, LoopLag
from master.services.prometheus import render
from tests.master.inprocess import make_app, running, services_of
from tests.master.test_prometheus_page import parse, samples


def test_since_returns_the_kept_samples_after_a_time_oldest_first():
    lag = LoopLag(keep=4)
    for n in range(6):  # the ring keeps the last 4
        lag.record(100.0 + n, n / 1000, n / 100)
    assert lag.since(0) == [
        (102.0, 0.002, 0.02),
        (103.0, 0.003, 0.03),
        (104.0, 0.004, 0.04),
        (105.0, 0.005, 0.05),
    ]
    assert lag.since(103.0) == [(104.0, 0.004, 0.04), (105.0, 0.005, 0.05)]
    assert lag.since(105.0) == []
    assert lag.count == 6 and abs(lag.total - 0.015) < 1e-12


def test_worst_looks_only_at_the_recent_window():
    lag = LoopLag()
    now = time.time()
    lag.record(now - 30, 2.0)  # an old stall: outside the window
    lag.record(now - 1, 0.04)
    lag.record(now - 0.5, 0.01)
    assert lag.worst(10) == 0.04
    assert LoopLag().worst(10) == 0.0


def test_buckets_are_cumulative_with_the_bound_inclusive():
    lag = LoopLag()
    for value in (0.0, 0.001, 0.0011, 0.05, 0.3, 99.0):
        lag.record(1.0, value)
    counts = dict(lag.cumulative())
    assert counts[0.001] == 2  # le="0.001" holds 0 and exactly 0.001
    assert counts[0.0025] == 3
    assert counts[0.05] == 4
    assert counts[0.5] == 5
    assert counts[BUCKETS[-1]] == 5
    assert counts[float("inf")] == 6


def test_the_histogram_on_the_prometheus_page(tmp_path):
    app = make_app(tmp_path / "m")
    svc = services_of(app)
    for value in (0.002, 0.2):
        svc.loop_lag.record(time.time(), value)
    families = parse(render(svc))
    family = families["gdos_master_event_loop_delay_seconds"]
    assert family.type == "histogram"
    buckets = samples(families, "gdos_master_event_loop_delay_seconds_bucket")
    assert buckets[(("le", "0.001"),)] == 0
    assert buckets[(("le", "0.0025"),)] == 1
    assert buckets[(("le", "+Inf"),)] == 2
    assert samples(families, "gdos_master_event_loop_delay_seconds_count") == {(): 2}
    assert samples(families, "gdos_master_event_loop_lag_seconds") == {(): 0.2}


def test_the_debug_route_exists_only_with_the_flag(tmp_path):
    with running(make_app(tmp_path / "off")) as (client, auth):
        assert client.get("/api/v1/debug/loop-lag", headers=auth).status_code == 404
    with running(make_app(tmp_path / "on", debug_endpoints=True)) as (client, auth):
        assert client.get("/api/v1/debug/loop-lag").status_code == 401
        before = time.time()
        time.sleep(0.2)  # the sampler runs on the app's own loop meanwhile
        body = client.get("/api/v1/debug/loop-lag", params={"since": before}, headers=auth)
        assert body.status_code == 200, body.text
        got = body.json()
        assert got["period"] > 0 and got["samples"], got
        assert all(t > before and lag >= 0 and cpu >= 0 for t, lag, cpu in got["samples"])
