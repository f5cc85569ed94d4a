"""The batch and rollout benchmarks still run (GDOS only, a few processes): a change to the API
or the agent must not leave bench/batch.py or bench/rollout.py broken until the next benchmark
run. bench/cluster.py's is test_cluster_bench_smoke.py (its own file, so it runs in parallel)."""

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def test_batch_bench_runs_and_reports_every_figure(tmp_path):
    work = tmp_path / "bench"
    argv = [sys.executable, str(ROOT / "bench" / "batch.py"), "--only", "gdos", "--n", "4"]
    argv += ["--only", "limit", "--agents", "2", "--rounds", "1", "--work", str(work)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["tool"] for r in rows] == ["GDOS", "limit"]
    row = rows[0]
    assert len(row["start_all_rounds_s"]) == 1 and len(row["stop_all_rounds_s"]) == 1
    assert 0 < row["start_all_s"] < 60 and 0 < row["stop_all_s"] < 60
    assert 0 < row["respawn_ms"] < 30_000  # each kill -9 victim was replaced
    assert row["daemon_rss_mib"] > 5  # two agents' RSS, read with the 4 processes running
    assert "| GDOS |" in done.stdout  # the table a reader copies into RESULTS.md
    bare = rows[1]  # the bare launcher: the same 4 programs started, stopped and respawned
    assert 0 < bare["start_all_s"] < 60 and 0 < bare["stop_all_s"] < 60
    assert 0 < bare["respawn_ms"] < 30_000
    assert "| limit |" in done.stdout and "- GDOS / limit: start-all " in done.stdout


def test_rollout_bench_runs_and_reports_every_figure(tmp_path):
    argv = [sys.executable, str(ROOT / "bench" / "rollout.py"), "--only", "gdos", "--n", "2"]
    argv += ["--agents", "1", "--mib", "1", "--batch", "1", "--work", str(tmp_path / "bench")]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout[done.stdout.index("-- gdos:") + len("-- gdos:") :]
    row = json.loads(text)
    assert row["batches"] == 2 and 0 < row["rolling_s"] < row["rollout_total_s"]
    assert row["downtime_samples"] == 2 and row["rollback_fetches"] == 0
    assert 0 < row["agent_rss_growth_mib"] < 100
