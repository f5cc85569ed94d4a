"""How long a routed command waits for the events before it, under a fleet's flow of events.

A command routed to another master first waits until the events its master published before
it are committed to `cluster_events` (`ClusterEvents.written`), and the target waits until it
has read the rows it was signalled (`read_up`). This measures both waits on a real PostgreSQL
15 (a throwaway cluster) between two masters' event relays in one process, while `--rate`
broadcast events a second flow (a fleet's instance and node events):

    .venv/bin/python -m bench.event_wait [--rate 200] [--waits 100] [--base /path/to/checkout]

`--base` runs the same measurement on another checkout's code (for an A/B against main).
Prints the median and p99 of each wait, in ms, and one JSON line.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] if ordered else float("nan")


async def measure(url: str, rate: float, waits: int) -> dict[str, Any]:
    from master.db.session import Database
    from master.hub import Hub
    from master.services.agents import AgentRegistry
    from master.services.bus import Bus
    from master.services.cluster_events import ClusterEvents

    db = Database(url)
    db.migrate()
    peers = []
    for name in ("master-a", "master-b"):
        agents = AgentRegistry()
        agents.master_id = name
        hub = Hub()
        hub.subscribe()  # a console: events are encoded for it as in a master
        bus = Bus(db.url, db.engine)
        events = ClusterEvents(db, hub, bus, agents)
        events.attach()
        await bus.start()
        peers.append((hub, bus, events, asyncio.create_task(events.run())))
    (hub_a, _, events_a, _), (hub_b, _, events_b, _) = peers
    flowing = True

    async def flow(hub: Hub, tag: str) -> None:
        n = 0
        while flowing:
            hub.publish("instance", {"id": f"{tag}-{n % 1000}", "state": "running", "n": n})
            n += 1
            await asyncio.sleep(2 / rate)  # each master publishes half the flow

    flows = [asyncio.create_task(flow(hub_a, "a")), asyncio.create_task(flow(hub_b, "b"))]
    await asyncio.sleep(2.0)
    written: list[float] = []
    read: list[float] = []
    loop = asyncio.get_running_loop()
    for _ in range(waits):
        began = loop.time()
        await events_a.written(timeout=1.0)
        written.append((loop.time() - began) * 1000)
        began = loop.time()
        await events_b.read_up(timeout=1.0)
        read.append((loop.time() - began) * 1000)
        await asyncio.sleep(0.05)
    flowing = False
    await asyncio.gather(*flows)
    for _, bus, _, task in peers:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.stop()
    db.dispose()
    return {
        "written_ms_p50": round(pct(written, 50), 1),
        "written_ms_p99": round(pct(written, 99), 1),
        "read_up_ms_p50": round(pct(read, 50), 1),
        "read_up_ms_p99": round(pct(read, 99), 1),
        "waits": waits,
        "rate": rate,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200, help="broadcast events a second, in all")
    p.add_argument("--waits", type=int, default=100)
    p.add_argument("--base", default=None, help="another checkout's code to measure")
    p.add_argument("--db-url", default=None, help="(internal) a migrated-or-empty database")
    args = p.parse_args()
    if args.db_url:  # the measuring child, with the checkout's code on its path
        print(json.dumps(asyncio.run(measure(args.db_url, args.rate, args.waits))), flush=True)
        return
    sys.path.insert(0, str(ROOT))
    from tests.pg import Cluster, find_bindir, missing_reason

    bindir = find_bindir()
    if missing_reason() is not None or bindir is None:
        raise SystemExit(f"bench.event_wait: {missing_reason()}")
    code = Path(args.base).resolve() if args.base else ROOT
    cluster = Cluster(bindir).start()
    try:
        url = cluster.create_database()
        env = {**os.environ, "PYTHONPATH": str(code)}
        argv = [sys.executable, str(ROOT / "bench" / "event_wait.py"), "--db-url", url]
        argv += ["--rate", str(args.rate), "--waits", str(args.waits)]
        began = time.monotonic()
        out = subprocess.run(argv, env=env, cwd=code, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"bench.event_wait: the measuring process failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["code"] = str(code)
        result["load"] = round(os.getloadavg()[0], 1)
        result["seconds"] = round(time.monotonic() - began, 1)
    finally:
        cluster.stop()
    print(
        f"{code}: written() p50 / p99 {result['written_ms_p50']} / {result['written_ms_p99']} ms, "
        f"read_up() {result['read_up_ms_p50']} / {result['read_up_ms_p99']} ms "
        f"({result['waits']} waits, {result['rate']:.0f} events/s; load {result['load']})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
