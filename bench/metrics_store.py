"""The master's metrics store alone: memory of a fleet's full history, CPU per ingested sample.

    .venv/bin/python -m bench.metrics_store                      # 1,000 nodes x 20, this tree
    .venv/bin/python -m bench.metrics_store --before /tmp/base   # A/B against another checkout

Each variant runs in a fresh process (`--root` puts that tree first on `sys.path`) that builds a
`MetricsStore` with the default retention and fills it as bench/fleet.py's agents would report:
node rows, and instance rows with a noisy `cpu_percent` (two decimals, as the simulator sends)
and constant bytes and threads, through `MetricsService.ingest` (the agent channel's entry
point) on a simulated clock. The history (2 h of minutes) is fed one sample per minute, which
makes each minute's "average" as noisy as one sample (more than a real average: an upper bound);
then the recent window (11 min) second by second. Memory: RSS growth of the process and the
store's own `allocated_bytes`. CPU: `time.process_time` per ingested sample over `--steady`
more seconds of the fleet's messages (building the messages measured apart and subtracted).
With `--before`, CPU rounds alternate (ABAB) in fresh processes; figures are medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def child(nodes: int, per_node: int, minutes: int, steady: int) -> dict[str, Any]:
    import random
    import time
    import types

    import psutil

    from master.hub import Hub
    from master.services import metrics as metrics_module
    from master.services.directory import Directory
    from master.services.metrics import MetricsService, MetricsStore
    from protocol.messages import Metrics

    proc = psutil.Process()
    random.seed(1)
    clock = [1_800_000_000.25]  # the simulated wall clock, so that `ts` is never "skewed"
    metrics_module.time = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
        time=lambda: clock[0], monotonic=time.monotonic
    )
    hub = Hub()
    directory = Directory(hub)
    fleet: list[tuple[str, list[str]]] = []
    for n in range(nodes):
        node_id = f"{n:032x}"
        directory.on_node({"id": node_id, "hostname": f"host-{n:04d}"})
        ids = [f"{n:04d}-{k:02d}-{'x' * 24}" for k in range(per_node)]
        for k, iid in enumerate(ids):
            directory.on_instance({"id": iid, "node_id": node_id, "name": f"svc-{k}"})
        fleet.append((node_id, ids))
    rss0 = proc.memory_info().rss
    store = MetricsStore()
    service = MetricsService(store, directory, hub)
    rnd = random.random

    def messages(ts: float) -> list[tuple[str, Metrics]]:
        """One tick of the fleet, as bench/fleet.py's agents send it."""
        node = (35.0 + rnd(), 41.0, 63.0, 120_000.0, 80_000.0, 0.7)
        return [
            (
                node_id,
                Metrics(
                    ts=ts,
                    node=node,
                    instances=[(iid, round(2 + rnd(), 2), 48 << 20, 0, 4096, 4) for iid in ids],
                ),
            )
            for node_id, ids in fleet
        ]

    def second() -> None:
        for node_id, msg in messages(clock[0]):
            service.ingest(node_id, msg)
        clock[0] += 1.0

    start = time.monotonic()
    for _ in range(minutes):
        second()
        clock[0] += 59.0
    for _ in range(660):
        second()
    fill_s = time.monotonic() - start
    rss1 = proc.memory_info().rss
    allocated = store.allocated_bytes()

    # CPU per sample: ingest of the fleet's messages, less building them.
    c0 = time.process_time()
    for _ in range(steady):
        second()
    c1 = time.process_time()
    for _ in range(steady):
        messages(clock[0])
    c2 = time.process_time()
    samples = steady * nodes * (per_node + 1)
    assert service.samples >= samples and store.dropped_old == 0
    return {
        "series": len(store),
        "rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
        "allocated_mib": round(allocated / 2**20, 1),
        "ceiling_mib": round(store.ceiling_bytes() / 2**20, 1),
        "fill_s": round(fill_s, 1),
        "us_per_sample": round(((c1 - c0) - (c2 - c1)) / samples * 1e6, 3),
        "load": round(os.getloadavg()[0], 1),
    }


def run(root: Path, args: argparse.Namespace, minutes: int, steady: int) -> dict[str, Any]:
    code = (
        f"import sys, json, runpy; sys.path.insert(0, {str(root)!r}); "
        f"child = runpy.run_path({__file__!r})['child']; "
        f"print(json.dumps(child({args.nodes}, {args.per_node}, {minutes}, {steady})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--per-node", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=120, help="history fed before the window")
    parser.add_argument("--steady", type=int, default=60, help="seconds of samples timed")
    parser.add_argument("--before", type=Path, help="another checkout to compare against")
    parser.add_argument("--rounds", type=int, default=2, help="CPU rounds per variant (A/B)")
    args = parser.parse_args()
    variants = {"after": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    memory = {name: run(root, args, args.minutes, args.steady) for name, root in variants.items()}
    print(json.dumps({"memory": memory}), flush=True)
    if args.before:
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, root in variants.items():
                cpu[name].append(run(root, args, 0, args.steady)["us_per_sample"])
        print(json.dumps({"cpu_us_per_sample": cpu}), flush=True)
        print(json.dumps({k: statistics.median(v) for k, v in cpu.items()}))


if __name__ == "__main__":
    main()
