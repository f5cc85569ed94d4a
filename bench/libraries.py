"""Libraries against hand-written code, side by side in one run (medians of alternating runs).

    .venv/bin/python -m bench.libraries --before <commit> [--rounds 5] [what ...]

The agent's WebSocket client: `--before` names a commit with the hand-written RFC 6455 client,
"after" is this checkout (the `websockets` sans-I/O protocol). Each measurement runs in a fresh
process with that tree first on the import path. The master's `/metrics` page: the
hand-written `master.services.prometheus` against the same page through `prometheus_client`
(bench/prometheus_client_page.py). The two sides alternate round by round, so a busy spell on a
shared machine hits both. `what` is any of:
- `agent-rss`: a real agent enrolled with a real master over plain http, RSS once online and
  idle, and whether OpenSSL is mapped into it;
- `ws-cpu`: `--connections` agent WebSocket clients in one process, each sending a hello then a
  metrics message (20 instances) per second to a real master: CPU per message;
- `scrape`: the `/metrics` page for 1,000 nodes x 20 instances held by the master's own
  services in-process: time per scrape, import cost and RSS;
- `frozen`: the size of the one-file agent built from each tree (PyInstaller, ~1 min each).
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a measuring child has put the tree it measures first
    sys.path.insert(0, str(ROOT))

WHAT = ("agent-rss", "ws-cpu", "scrape", "frozen")


def extract(commit: str, into: Path) -> Path:
    """The packages of `commit` (a tree to put first on the import path)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, "agent", "protocol", "master", "build_spec", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def in_tree(tree: Path, *argv: str) -> dict[str, Any]:
    """Run this module's `argv` step in a fresh interpreter with `tree` first on the path."""
    code = (
        f"import sys; sys.path[:0] = [{str(tree)!r}, {str(ROOT)!r}]; "
        "from bench.libraries import step; step(sys.argv[1:])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=tree, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{argv} in {tree} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def step(argv: list[str]) -> None:
    """The measuring side, in the child process."""
    name, *args = argv
    steps: dict[str, Callable[..., dict[str, Any]]] = {"scrape": scrape, "ws-cpu": ws_cpu}
    print(json.dumps(steps[name](*args)))


# -- scrape ---------------------------------------------------------------------------------------


def rss_mib(pid: int | None = None) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss / 2**20)


def scrape(impl: str, scrapes: str = "10") -> dict[str, Any]:
    """Scrape time and RSS of one rendering of the page, on a fleet built in this process."""
    import importlib
    import resource

    from master.app import Services  # the master's code, its own Prometheus page included
    from tests.master.inprocess import settings_for

    svc = Services(settings_for(Path(tempfile.mkdtemp())))
    fleet_state(svc)
    rss_state = rss_mib()
    module = (
        "master.services.prometheus" if impl == "hand-written" else "bench.prometheus_client_page"
    )
    render = importlib.import_module(module).render
    rss_code = rss_mib()
    times = []
    for _ in range(int(scrapes) + 1):  # the first one warms caches up: not counted
        t0 = time.perf_counter()
        page = render(svc)
        times.append(time.perf_counter() - t0)
    return {
        "scrape_ms": statistics.median(times[1:]) * 1000,
        "bytes": len(page),
        "import_mib": rss_code - rss_state,
        "rss_mib": rss_mib(),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def fleet_state(svc: Any, nodes: int = 1000, per_node: int = 20) -> None:
    """What the master holds for a fleet: directory entries and a fresh sample per series."""
    import uuid

    from master.services.metrics import INSTANCE_WIDTH, NODE_WIDTH, instance_key, node_key

    now = int(time.time())
    system = uuid.uuid4().hex
    for n in range(nodes):
        nid = uuid.uuid4().hex
        svc.directory.on_node({"id": nid, "hostname": f"host-{n:04d}.example.net"})
        svc.metrics.store.add(node_key(nid), NODE_WIDTH, now, [35.3, 41.2, 63, 1.2e5, 8e4, 0.7])
        for k in range(per_node):
            iid = uuid.uuid4().hex
            info = {
                "id": iid,
                "node_id": nid,
                "system_id": system,
                "name": f"svc-{k}",
                "state": "running",
            }
            svc.directory.on_instance(info)
            row = [2 + random.random(), 48 << 20, 0, 4096, 4]
            svc.metrics.store.add(instance_key(iid), INSTANCE_WIDTH, now, row)


# -- ws-cpu ---------------------------------------------------------------------------------------


def ws_cpu(master: str, creds_file: str, seconds: str) -> dict[str, Any]:
    import asyncio

    from agent.wsclient import connect
    from bench.fleet import SimAgent, SimInstance, ws_url

    creds = json.loads(Path(creds_file).read_text())

    async def one(node_id: str, secret: str, stop: float, counts: list[int]) -> None:
        sim = SimAgent(master, node_id, secret, f"h-{node_id[:8]}")
        hello = sim.hello_text()  # no instances: the master has none to reconcile
        for _ in range(20):
            iid = os.urandom(16).hex()
            sim.instances[iid] = SimInstance(iid)
        text = sim.metrics_text(time.time())  # encoded once: the WebSocket's cost is measured
        ws = await connect(
            ws_url(master), headers={"Authorization": f"Bearer {secret}"}, max_size=8 << 20
        )
        async with ws:
            await ws.send(hello)
            reader = asyncio.create_task(drain(ws))
            while time.monotonic() < stop:
                tick = sim.next_tick()
                await asyncio.sleep(max(0.0, tick - time.time()))
                await ws.send(text)
                counts[0] += 1
            reader.cancel()

    async def drain(ws: Any) -> None:
        async for _ in ws:
            pass

    async def main() -> dict[str, Any]:
        warm = 3.0
        stop = time.monotonic() + warm + float(seconds)
        counts = [0]
        tasks = [asyncio.create_task(one(n, s, stop, counts)) for n, s in creds]
        await asyncio.sleep(warm)
        sent0, cpu0, wall0 = counts[0], time.process_time(), time.monotonic()
        await asyncio.gather(*tasks)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        sent = counts[0] - sent0
        return {
            "us_per_message": cpu / sent * 1e6,
            "messages": sent,
            "cpu_percent": cpu / wall * 100,
        }

    return asyncio.run(main())


# -- the parent side ------------------------------------------------------------------------------


def alternate(
    sides: dict[str, Any], rounds: int, measure: Callable[[str, Any], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Each side `rounds` times, in turn (ABBA...), so that a busy spell hits both."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            runs[name].append(measure(name, sides[name]))
            print(f"  round {r + 1} {name}: {runs[name][-1]}", flush=True)
    return runs


def report(title: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n{title} (medians of {len(next(iter(runs.values())))} runs)")
    for name, results in runs.items():
        keys = [k for k, v in results[0].items() if isinstance(v, int | float)]
        medians = {k: round(statistics.median(r[k] for r in results), 2) for k in keys}
        print(f"  {name:7} {medians}")


def measure_agents(trees: dict[str, Path], rounds: int, tmp: Path) -> None:
    from tests.support import Master

    master = Master(tmp / "master", extra=["--log-level", "warning"])
    master.launch()
    try:
        api = master.api()
        runs = alternate(trees, rounds, lambda name, tree: one_agent(master, api, tree, tmp))
        report("agent idle RSS, plain http master", runs)
    finally:
        master.stop()


def one_agent(master: Any, api: Any, tree: Path, tmp: Path) -> dict[str, Any]:
    from tests.support import Agent

    launcher = (
        f"import sys, runpy; sys.path[:0] = [{str(tree)!r}]; "
        "runpy.run_module('agent', run_name='__main__', alter_sys=True)"
    )
    work = Path(tempfile.mkdtemp(dir=tmp))
    agent = Agent(master, work / "agent", program=[sys.executable, "-c", launcher])
    try:
        agent.start_and_wait(api)
        time.sleep(5)  # idle: hello done, first heartbeats and metrics sent
        samples = []
        for _ in range(5):
            samples.append(rss_mib(agent.pid))
            time.sleep(1)
        maps = Path(f"/proc/{agent.pid}/maps").read_text()
        return {
            "rss_mib": statistics.median(samples),
            "openssl_mapped": "libcrypto" in maps,
            "websockets_mapped": "websockets/speedups" in maps,  # which client it runs
        }
    finally:
        agent.stop()


def measure_ws_cpu(
    trees: dict[str, Path], rounds: int, tmp: Path, connections: int, seconds: float
) -> None:
    import asyncio

    import httpx

    from bench.fleet import enroll
    from tests.support import Master

    master = Master(tmp / "master-ws", extra=["--log-level", "warning"])
    master.launch()
    try:

        async def enroll_all() -> list[tuple[str, str]]:
            async with httpx.AsyncClient(timeout=60) as client:
                return [
                    await enroll(client, master.url, master.join_token, f"ws-{n}")
                    for n in range(connections)
                ]

        creds = tmp / "creds.json"
        creds.write_text(json.dumps(asyncio.run(enroll_all())))
        runs = alternate(
            trees,
            rounds,
            lambda name, tree: in_tree(tree, "ws-cpu", master.url, str(creds), str(seconds)),
        )
        report(f"agent WebSocket client CPU, {connections} connections x 1 metrics message/s", runs)
    finally:
        master.stop()


def measure_frozen(trees: dict[str, Path], tmp: Path) -> None:
    print("\none-file agent size")
    for name, tree in trees.items():
        dist = tmp / f"dist-{name}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "PyInstaller",
                "--noconfirm",
                "--clean",
                "--log-level",
                "WARN",
                "--distpath",
                str(dist),
                "--workpath",
                str(tmp / f"work-{name}"),
                str(tree / "build_spec" / "agent.spec"),
            ],
            cwd=tree,
            check=True,
        )
        print(f"  {name:7} {(dist / 'gdos-agent').stat().st_size / 1e6:.2f} MB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description="libraries vs the hand-written code they replaced")
    p.add_argument("--before", required=True, help="the commit with the hand-written code")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--connections", type=int, default=200, help="ws-cpu: clients in one process")
    p.add_argument("--seconds", type=float, default=30, help="ws-cpu: measured time per run")
    p.add_argument("what", nargs="*", help=f"any of {', '.join(WHAT)} (default: all)")
    args = p.parse_args()
    if unknown := set(args.what) - set(WHAT):
        p.error(f"unknown: {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="gdos-libraries-"))
    trees = {"before": extract(args.before, tmp / "before"), "after": ROOT}
    print(
        f"before = {args.before}, after = this checkout; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    )
    try:
        for what in args.what or WHAT:
            print(f"\n=== {what} (load {os.getloadavg()[0]:.1f})", flush=True)
            if what == "agent-rss":
                measure_agents(trees, args.rounds, tmp)
            elif what == "ws-cpu":
                measure_ws_cpu(trees, args.rounds, tmp, args.connections, args.seconds)
            elif what == "scrape":
                impls = {"hand-written": ROOT, "prometheus_client": ROOT}
                runs = alternate(
                    impls, args.rounds, lambda name, tree: in_tree(tree, "scrape", name)
                )
                report("GET /metrics, 1,000 nodes x 20 instances", runs)
            else:
                measure_frozen(trees, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
