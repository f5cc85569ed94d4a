"""What polling `GET /api/v1/nodes` costs the master: its CPU with a poller at 10 Hz, less idle.

    .venv/bin/python -m bench.nodes_poll                        # this tree, 1,000 nodes
    .venv/bin/python -m bench.nodes_poll --base /tmp/me-base    # and another, interleaved

Each round starts a real master (bench/agent_channel.py's `MasterUnderTest`), enrolls `--nodes`
nodes (one instance each, no agent connects: the listing is the same size), measures the master's idle CPU over
`--seconds`, then its CPU while one client times `GET /nodes` every `--interval` seconds, one
request at a time (as bench/api_probe.py does in the fleet benchmark). Figures: master CPU
cores spent on the polling, and the poller's p50 / p99 / max in ms.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import compile_sources
from bench.agent_channel import MasterUnderTest
from bench.fleet_bench import pct

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(master: MasterUnderTest) -> float:
    return float(sum(master.proc.cpu_times()[:2]))


async def one_round(root: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gdos-nodes-poll-") as tmp:
        master = MasterUnderTest(root, Path(tmp), args.nodes, 1)
        try:
            await master.setup()
            await asyncio.sleep(2)  # enrolment's tail settles
            c0, t0 = cpu_seconds(master), time.monotonic()
            await asyncio.sleep(args.seconds)
            idle = (cpu_seconds(master) - c0) / (time.monotonic() - t0)
            headers = {"Authorization": f"Bearer {master.token}"}
            times: list[float] = []
            async with httpx.AsyncClient(base_url=master.url, headers=headers, timeout=30) as c:
                c0, t0 = cpu_seconds(master), time.monotonic()
                next_at = t0
                while time.monotonic() - t0 < args.seconds:
                    began = time.perf_counter()
                    r = await c.get("/api/v1/nodes")
                    times.append((time.perf_counter() - began) * 1000)
                    assert r.status_code == 200 and len(r.json()) == args.nodes, r.status_code
                    next_at += args.interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                busy = (cpu_seconds(master) - c0) / (time.monotonic() - t0)
            return {
                "polling_cores": round(busy - idle, 4),
                "idle_cores": round(idle, 4),
                "p50_ms": round(pct(times, 50), 1),
                "p99_ms": round(pct(times, 99), 1),
                "max_ms": round(max(times), 1),
            }
        finally:
            master.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--base", default=None, help="another source tree, measured interleaved")
    args = p.parse_args()
    trees = {"this": ROOT} | ({"base": Path(args.base).resolve()} if args.base else {})
    for root in trees.values():
        compile_sources(root)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, root in trees.items():
            got = asyncio.run(one_round(root, args))
            results[name].append(got)
            print(f"  round {r + 1} {name}: {got} (load {os.getloadavg()[0]:.1f})", flush=True)
    out: dict[str, Any] = {}
    for name, rounds in results.items():
        for key in rounds[0]:
            out[f"{name}_{key}_median"] = statistics.median(x[key] for x in rounds)
    out["load_at_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
