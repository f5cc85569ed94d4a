"""A master's memory holding a fleet, this tree and `--base` in turn.

    .venv/bin/python -m bench.master_memory --base /work/main --rounds 2
    .venv/bin/python -m bench.master_memory --tracemalloc 1      # where the Python heap goes
    .venv/bin/python -m bench.master_memory --imports --base /work/main

Each run starts a fresh master (its own data under /tmp) from one source tree, enrolls the
simulated fleet (bench/fleet.py: 1,000 agents x 20 processes by default), writes their instances
into the database, sets fleet_bench's alert rule over the fleet, connects the agents, then
subscribes a console to 100 instances' metrics and polls `GET /nodes` at 10 Hz (as fleet_bench's
steady state does). The master's RSS is sampled every 5 s until `--age` seconds after the fleet
connected (140: fleet_bench's last steady window, its 20 s warm-up and 120 s measured), and
`/proc/<pid>/smaps_rollup` is read then, and glibc's malloc totals (bench/heap_hook). RSS is not distorted by a loaded machine the way CPU
is, but the metrics history grows with time: compare at the same age.

`--postgres` runs the master as one of bench.cluster's (a throwaway PostgreSQL 15 database and
moto's S3 server, each its own per run): the fleet all on that one master.

`--tracemalloc N` runs the master with PYTHONTRACEMALLOC=N (much slower, more memory: a
breakdown, not a figure) and prints its top allocations by file and by line at the end, with the
objects its collector tracks by type (bench/heap_hook). `--imports` measures, in fresh
processes, the RSS after `import master.app` and after `create_app` for each tree.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import compile_sources
from bench.fleet_bench import (
    ADMIN_PASSWORD,
    HOT_RULE,
    PY,
    ROOT,
    Console,
    Worker,
    free_port,
    master_args,
    measured_setup,
    seed_instances,
    stop_all,
)

HOOK = ROOT / "bench" / "heap_hook"


def smaps_rollup(pid: int) -> dict[str, float]:
    """MiB per field of /proc/<pid>/smaps_rollup (Rss, Pss, Anonymous, ...)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[name.strip()] = round(int(parts[0]) / 1024, 1)
    return out


async def one_run(root: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    # A new folder each run: a second round in the same one found its database seeded already.
    data = Path(tempfile.mkdtemp(prefix=f"gdos-master-memory-{os.getpid()}-{label}-"))
    if not args.postgres:
        return await _one_run(root, args, label, data, [], data / "master" / "ops_data.db")
    from bench.cluster import BUCKET, S3_KEYS, postgres, s3_server

    with postgres(None) as db_url, s3_server(data) as s3:
        cluster = ["--db-url", db_url, "--store-type", "minio", "--minio-endpoint", s3]
        cluster += ["--minio-bucket", BUCKET, "--minio-ak", S3_KEYS[0], "--minio-sk", S3_KEYS[1]]
        return await _one_run(root, args, label, data, cluster, db_url)


async def _one_run(
    root: Path,
    args: argparse.Namespace,
    label: str,
    data: Path,
    cluster: list[str],
    db: Path | str,
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if cluster:
        cluster += ["--advertise-url", url]
    report = data / "heap.json"
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{HOOK}",
        "GDOS_BENCH_HEAP_REPORT": str(report),
    }
    if args.tracemalloc:
        env["PYTHONTRACEMALLOC"] = str(args.tracemalloc)
    env.update(item.split("=", 1) for item in args.env)
    log = open(data / "master.log", "ab")  # noqa: SIM115
    master = subprocess.Popen(
        [PY, *master_args(port, data / "master", "--debug-endpoints", *cluster)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=measured_setup(0),
    )
    groups: list[Worker] = []
    probe: subprocess.Popen[bytes] | None = None
    console_task: asyncio.Task[None] | None = None
    result: dict[str, Any] = {"tree": label, "root": str(root), "load_at_start": os.getloadavg()[0]}
    try:
        for _ in range(1200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        proc = psutil.Process(master.pid)
        result["rss_mib_started"] = round(proc.memory_info().rss / 2**20, 1)
        token = httpx.post(
            url + "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        join = (data / "master" / "join-token").read_text().strip()
        per = -(-args.agents // args.workers)
        first = 0
        for w in range(args.workers):
            count = min(per, args.agents - first)
            groups.append(Worker(f"w{w}", url, join, first, count, data / "sim"))
            first += count
        for g in groups:
            g.nodes = (await asyncio.to_thread(g.read, "enrolled"))["nodes"]
        nodes = [n for g in groups for n in g.nodes]
        _, mapping = seed_instances(db, nodes, args.processes)
        httpx.post(
            url + "/api/v1/alert-rules", json=HOT_RULE, headers={"Authorization": f"Bearer {token}"}
        ).raise_for_status()
        result["rss_mib_enrolled"] = round(proc.memory_info().rss / 2**20, 1)
        await asyncio.gather(
            *(
                g.ask(
                    {"cmd": "connect", "instances": {n: mapping[n] for n in g.nodes}}, "connected"
                )
                for g in groups
            )
        )
        connected = time.monotonic()
        result["rss_mib_connected"] = round(proc.memory_info().rss / 2**20, 1)
        probe = subprocess.Popen(
            [PY, "-m", "bench.api_probe", "--url", url, "--token", token, "--out", "/dev/null"],
            cwd=ROOT,
        )
        console = Console(url, token)
        console.keys = [f"metrics:{ids[0]}" for ids in list(mapping.values())[: args.watch]]
        console_task = asyncio.create_task(console.run())
        samples: list[tuple[float, float]] = []
        while (age := time.monotonic() - connected) < args.age:
            await asyncio.sleep(min(5.0, max(0.1, args.age - age)))
            samples.append((time.monotonic() - connected, proc.memory_info().rss / 2**20))
            print(
                f"  {label} age {samples[-1][0]:5.0f} s rss {samples[-1][1]:.1f} MiB, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        result["age_s"] = round(samples[-1][0], 1)
        result["rss_mib_at_age"] = round(samples[-1][1], 1)
        result["rss_mib_max"] = round(max(r for _, r in samples), 1)
        result["smaps_rollup_mib"] = smaps_rollup(master.pid)
        result["cpu_s"] = round(sum(proc.cpu_times()[:2]), 1)
        # Minor page faults: what touching pages again costs (after a trim gave them back).
        result["minor_faults"] = int(Path(f"/proc/{master.pid}/stat").read_text().split()[9])
        if args.trim:  # what glibc's free space holds of RSS: malloc_trim(0) (the heap hook)
            os.kill(master.pid, signal.SIGUSR2)
            await asyncio.sleep(2)
            result["rss_mib_after_trim"] = round(proc.memory_info().rss / 2**20, 1)
        result["load_at_end"] = os.getloadavg()[0]
        os.kill(master.pid, signal.SIGUSR1)
        for _ in range(600):
            if report.exists():
                break
            await asyncio.sleep(0.5)
        result["heap"] = json.loads(report.read_text())
    finally:
        if console_task is not None:
            console_task.cancel()
            with contextlib.suppress(BaseException):
                await console_task
        stop_all(probe, groups, master)
        log.close()
    return result


IMPORT_PROBE = """
import json, tempfile
from pathlib import Path
def rss():
    status = Path('/proc/self/status').read_text()
    return int(status.split('VmRSS:')[1].split()[0]) / 1024
out = {'python': rss()}
import master.app
out['import master.app'] = rss()
from master.config import Settings
settings = Settings(data_dir=Path(tempfile.mkdtemp()))
app = master.app.create_app(settings)
out['create_app'] = rss()
print(json.dumps({k: round(v, 1) for k, v in out.items()}))
"""


def imports(trees: list[tuple[str, Path]], rounds: int) -> dict[str, Any]:
    """RSS (MiB) after the interpreter, `import master.app` and `create_app`; medians."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
    for _ in range(rounds):
        for label, root in trees:
            text = subprocess.run(
                [PY, "-c", IMPORT_PROBE],
                cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[label].append(json.loads(text.strip().splitlines()[-1]))
    return {
        label: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for label, rs in runs.items()
    }


def print_heap(heap: dict[str, Any], top: int) -> None:
    mib = {k: round(v / 2**20, 1) for k, v in heap.get("mallinfo2", {}).items()}
    print(f"glibc malloc (MiB): {mib}; Python blocks {heap['allocated_blocks']}")
    sqlite = {k: round(v / 2**20, 1) for k, v in heap.get("sqlite", {}).items()}
    print(f"SQLite's heap (MiB): {sqlite}")
    if "filename" in heap:
        print(f"traced: {heap['traced_bytes'] / 2**20:.1f} MiB; top by file:")
        for where, size, count in heap["filename"][:top]:
            print(f"  {size / 2**20:7.2f} MiB {count:9d}  {where}")
        print("top by line:")
        for where, size, count in heap["lineno"][:top]:
            print(f"  {size / 2**20:7.2f} MiB {count:9d}  {where}")
    print(f"objects the collector tracks (not frozen ones): {heap['gc_objects']}")
    for name, count, size in heap["gc_types"][:top]:
        print(f"  {count:9d} {size / 2**20:7.2f} MiB  {name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--processes", type=int, default=20)
    p.add_argument("--workers", type=int, default=4, help="simulator processes")
    p.add_argument("--watch", type=int, default=100, help="instances the console subscribes to")
    p.add_argument("--age", type=float, default=140, help="seconds after the fleet connected")
    p.add_argument("--base", default=None, help="another source tree, run in turn")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tracemalloc", type=int, default=0, help="frames per traced allocation")
    p.add_argument("--top", type=int, default=25)
    p.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME=VALUE for the master (e.g. MALLOC_ARENA_MAX=2)",
    )
    p.add_argument("--imports", action="store_true", help="only the RSS of importing the app")
    p.add_argument("--trim", action="store_true", help="then malloc_trim(0): RSS after it")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="the master on a throwaway PostgreSQL and moto's S3, as bench.cluster's masters",
    )
    args = p.parse_args()
    trees = [("tree", ROOT)]
    if args.base:
        trees.append(("base", Path(args.base).resolve()))
    for _, root in trees:
        compile_sources(root)
    if args.imports:
        print(json.dumps(imports(trees, max(args.rounds, 3)), indent=1))
        return
    results = []
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for label, root in order:
            result = asyncio.run(one_run(root, args, label))
            heap = result.pop("heap", None)
            print(json.dumps(result), flush=True)
            if heap:
                print_heap(heap, args.top if args.tracemalloc or args.rounds == 1 else 0)
            results.append(result)
    for label, _ in trees:
        mine = [r["rss_mib_at_age"] for r in results if r["tree"] == label]
        print(
            f"{label}: RSS at age {args.age:.0f} s, median {statistics.median(mine):.1f} MiB "
            f"of {mine}"
        )


if __name__ == "__main__":
    main()
