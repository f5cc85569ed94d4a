"""bench/cluster.py still runs (6 agents over 3 masters on PostgreSQL and S3): a change to the
API, the agent or the masters must not leave it broken until the next benchmark run."""

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def test_cluster_bench_runs_and_reports_every_figure(pg_cluster, pg_migrated, tmp_path):
    url = pg_cluster.create_database(template=pg_migrated)
    argv = [sys.executable, "-m", "bench.cluster", "--agents", "6", "--processes", "2"]
    argv += ["--seconds", "3", "--steady-rate", "10", "--warmup", "1"]
    argv += ["--kill-window", "3", "--kill-rate", "5"]
    argv += ["--grace", "2", "--wake", "2", "--final", "1", "--db-url", url]
    argv += ["--data-dir", str(tmp_path / "bench")]
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    finally:
        pg_cluster.drop_database(url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(done.stdout.splitlines()[-1])
    assert r["nodes_per_master"] == {"m0": 2, "m1": 2, "m2": 2}  # the agents' lists rotated
    # Every node of the killed, then of the stopped master (the busier of two holding all 6)
    # came back on a survivor, on its event streams and in GET /nodes.
    assert r["kill"]["nodes"] >= 1 and r["stop"]["nodes"] >= 3
    for phase in ("kill", "stop"):
        moved = r[phase]
        assert moved["api_seen"] == moved["events_seen"] == moved["nodes"]
        assert 0 < moved["api_s"] < 60 and 0 < moved["events_s"] < 60
    # Every command is accounted for: accepted or refused, and each accepted one executed
    # once, twice or lost.
    for prefix in ("steady", "kill_commands"):
        assert r[f"{prefix}_sent"] > 0
        refused = sum(r[f"{prefix}_refused"].values())
        assert r[f"{prefix}_accepted"] + refused == r[f"{prefix}_sent"]
        outcomes = r[f"{prefix}_executed_once"] + r[f"{prefix}_lost"]
        assert outcomes <= r[f"{prefix}_accepted"] <= outcomes + r[f"{prefix}_executed_twice"]
    # Of 30 commands each through a random master, some went through the one holding the node.
    assert r["command_ms_same_master_n"] > 0 and r["command_ms_same_master_p50"] > 0
    assert set(r["usage_steady"]) == {"m0", "m1", "m2", "postgres"}
    assert all(u["rss_mib_last"] > 10 for u in r["usage_steady"].values())
    assert r["pg_connections_max"] >= 3 and sum(r["pg_connections_per_master"].values()) >= 3
    assert set(r["master_log_errors"]) == {"m0", "m1", "m2"}
    assert "| kill -9: all its nodes online elsewhere |" in done.stdout
