"""Added latency of a live sample forwarded between masters: two masters on one PostgreSQL
database (a throwaway cluster) and one S3 bucket (moto's), an agent held by master B sampling
every 0.1 s, and one client subscribed to the node's `metrics:<id>` on B (the source) and on A
(forwarded by A from B's stream). Each sample's arrival on A minus its arrival on B, read by
one asyncio loop with both sockets, is the latency forwarding adds.

Run: .venv/bin/python bench/forwarding.py [--seconds 60]   (needs PostgreSQL's server binaries)
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.test_s3_store import s3_flags
from tests.pg import Cluster, find_bindir
from tests.support import Agent, Master, Proc, free_port, wait_for


async def collect(ws: ClientConnection, ident: str, into: dict[str, float], until: float) -> None:
    while time.monotonic() < until:
        try:
            raw = await asyncio.wait_for(ws.recv(), max(0.01, until - time.monotonic()))
        except TimeoutError:
            return
        event = json.loads(raw)
        if event["topic"] == "metrics" and event["data"]["id"] == ident:
            into[event["data"]["ts"]] = time.perf_counter()


async def measure(a: Master, b: Master, tokens: tuple[str, str], node: str, seconds: float):
    key = f"metrics:{node}"
    arrivals: tuple[dict[str, float], dict[str, float]] = ({}, {})
    sockets = []
    for master, token in zip((a, b), tokens, strict=True):
        url = master.url.replace("http://", "ws://") + "/api/v1/events"
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
        await ws.send(json.dumps({"subscribe": [key]}))
        sockets.append(ws)
    await asyncio.sleep(3.0)  # the upstream opened, the first samples through
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(collect(ws, node, into, until) for ws, into in zip(sockets, arrivals, strict=True))
    )
    for ws in sockets:
        await ws.close()
    on_a, on_b = arrivals
    return [(on_a[ts] - on_b[ts]) * 1000 for ts in on_b if ts in on_a], len(on_b)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (scripts/system-deps.sh installs them)")
    s3_port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    cluster = Cluster(bindir).start()
    procs: list[Proc] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            flags = ["--db-url", cluster.create_database(), *s3_flags(f"127.0.0.1:{s3_port}")]
            a, b = Master(root / "a", extra=flags), Master(root / "b", extra=flags)
            procs += [a, b]
            a.launch(90)
            b.launch(90)
            agent = Agent(
                b, root / "agent", extra=["--metrics-interval", "0.1"], token=a.join_token
            )
            procs.append(agent)
            api_a, api_b = a.api(), b.api()
            node = agent.start_and_wait(api_b)
            wait_for(lambda: api_a.get(f"/nodes/{node}")["master_id"], 30, what="A sees B")
            load = os.getloadavg()[0]
            added, sent = asyncio.run(
                measure(a, b, (api_a.token or "", api_b.token or ""), node, args.seconds)
            )
            added.sort()
            p99 = added[min(len(added) - 1, int(len(added) * 0.99))]
            print(
                f"forwarded samples: {len(added)} of {sent} seen on both; added latency "
                f"median {statistics.median(added):.2f} ms, p99 {p99:.2f} ms, "
                f"max {added[-1]:.2f} ms (load {load:.2f} at the start)"
            )
    finally:
        for proc in reversed(procs):
            proc.stop()
        cluster.stop()
        s3.stop()


if __name__ == "__main__":
    main()
