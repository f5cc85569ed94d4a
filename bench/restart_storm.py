"""A master's kill -9 and restart under a connected fleet, two source trees alternated.

    .venv/bin/python -m bench.restart_storm --base /work/main --rounds 3

One fleet of simulated agents (bench/fleet.py: 1,000 x 20 processes by default) stays up; the
master is killed (SIGKILL) and started again on the same data, from this tree and from `--base`
in turn (which goes first alternates each round). Per restart: seconds from the kill until
`/healthz` answers and until every agent is online again (`GET /nodes`, polled every 0.2 s),
the master's CPU seconds until then (a figure a loaded machine does not inflate much), its
event-loop lag p99 / max over the storm, and the load average at the kill. Medians per tree at
the end, as JSON.

The timeline of each restart, in seconds from the kill: the master's process start and the
phases it marks (`/debug/start-up`: imports, database, port, serving, first and last hello);
the simulator's side (when each agent saw the drop, its first retry, its attempts, when it
greeted again: p50 / max over the fleet). `--profile DIR` records the restarted master with
py-spy (collapsed stacks, one file per restart).
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import compile_sources
from bench.fleet_bench import (
    ADMIN_PASSWORD,
    PY,
    ROOT,
    Worker,
    free_port,
    loop_lag,
    master_args,
    measured_setup,
    seed_instances,
    start_up,
)


def launch(root: Path, port: int, data: Path, log: Any, nice: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, *master_args(port, data, "--debug-endpoints")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=measured_setup(nice),
    )


def wait_healthy(url: str, timeout: float = 300) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return time.time()
        time.sleep(0.05)
    raise TimeoutError("the master did not answer /healthz")


def wait_online(api: httpx.Client, nodes: set[str], timeout: float = 180) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            listed = api.get("/nodes").json()
            if nodes <= {n["id"] for n in listed if n["status"] == "online"}:
                return time.time()
        time.sleep(0.2)
    raise TimeoutError("not every agent came back online")


def timeline(api: httpx.Client, t0: float, started: float, workers: list[Worker]) -> dict[str, Any]:
    """Seconds from the kill to each phase of the master's start and of the agents' return."""
    out: dict[str, Any] = {"process_start": round(started - t0, 3), **start_up(api, t0)}
    lost: list[list[float]] = []
    for w in workers:
        w.send({"cmd": "reconnects"})
    for w in workers:
        lost += w.read("reconnects")["agents"]
    if lost:

        def spread_s(values: list[float]) -> list[float]:
            values.sort()
            return [round(values[len(values) // 2], 3), round(values[-1], 3)]

        out["agents_lost"] = len(lost)
        out["agent_saw_drop_p50_max"] = spread_s([x[0] - t0 for x in lost])
        out["agent_first_retry_after_drop_p50_max"] = spread_s([x[1] - x[0] for x in lost if x[1]])
        out["agent_attempts_p50_max"] = spread_s([float(x[2]) for x in lost])
        out["agent_greeted_p50_max"] = spread_s([x[3] - t0 for x in lost if x[3]])
    return out


def restart(
    label: str,
    root: Path,
    running: list[subprocess.Popen[bytes]],
    port: int,
    data: Path,
    log: Any,
    api: httpx.Client,
    url: str,
    nodes: set[str],
    workers: list[Worker],
    profile: Path | None,
    number: int,
    profile_seconds: int = 15,
    nice: int = 0,
) -> dict[str, Any]:
    """Kill the master in `running` and start one from `root` in its place."""
    load = os.getloadavg()[0]
    t0 = time.time()
    os.kill(running[0].pid, signal.SIGKILL)
    running[0].wait()
    master = running[0] = launch(root, port, data, log, nice)
    proc = psutil.Process(master.pid)
    spy = None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        out = profile / f"restart-{number}-{label}.txt"
        spy = subprocess.Popen(
            [
                *("py-spy", "record", "--pid", str(master.pid), "--rate", "200"),
                *("--duration", str(profile_seconds), "--format", "raw", "--nonblocking"),
                *("-o", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    healthy = wait_healthy(url)
    try:
        online = wait_online(api, nodes)
    except TimeoutError:  # a figure too, not the end of the comparison
        online = float("nan")
    cpu = sum(proc.cpu_times()[:2])
    if spy is not None:
        spy.wait()
    time.sleep(1.5)
    lag = loop_lag(api, "storm", [(t0, time.time() if online != online else online + 1)])
    row = {
        "code": label,
        "load_at_kill": round(load, 1),
        "healthz_s": round(healthy - t0, 2),
        "all_online_s": round(online - t0, 2),
        "master_cpu_s_to_online": round(cpu, 2),
        "lag_p99_ms": lag["loop_lag_ms_storm_p99"],
        "lag_max_ms": lag["loop_lag_ms_storm_max"],
        "timeline": timeline(api, t0, proc.create_time(), workers),
    }
    print(json.dumps(row), flush=True)
    return row


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir or f"/tmp/gdos-restart-storm-{os.getpid()}")
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    trees = {"this": ROOT, "base": Path(args.base).resolve()}
    log = open(data / "master.log", "ab")  # noqa: SIM115
    running = [launch(ROOT, port, data / "master", log, args.master_nice)]  # the master serving
    workers: list[Worker] = []
    rows: list[dict[str, Any]] = []
    try:
        wait_healthy(url)
        token = httpx.post(
            url + "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        join = (data / "master" / "join-token").read_text().strip()
        per = -(-args.agents // args.workers)
        for n in range(args.workers):
            count = min(per, args.agents - n * per)
            workers.append(Worker(f"w{n}", url, join, n * per, count, data / "sim"))
        for w in workers:
            w.nodes = (await asyncio.to_thread(w.read, "enrolled"))["nodes"]
        nodes = [n for w in workers for n in w.nodes]
        _, mapping = seed_instances(data / "master" / "ops_data.db", nodes, args.processes)
        await asyncio.gather(
            *(
                w.ask(
                    {"cmd": "connect", "instances": {n: mapping[n] for n in w.nodes}}, "connected"
                )
                for w in workers
            )
        )
        api = httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        wait_online(api, set(nodes))
        print(f"{len(nodes)} agents online; settling {args.settle:.0f} s", flush=True)
        time.sleep(args.settle)
        for r in range(args.rounds):
            order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
            for label in order:
                row = restart(
                    label,
                    trees[label],
                    running,
                    port,
                    data / "master",
                    log,
                    api,
                    url,
                    set(nodes),
                    workers,
                    Path(args.profile) if args.profile else None,
                    len(rows),
                    args.profile_seconds,
                    args.master_nice,
                )
                rows.append(row)
                time.sleep(args.settle)
    finally:
        for w in workers:
            with contextlib.suppress(Exception):
                w.popen.kill()
                w.popen.wait(10)
        running[0].terminate()
        try:
            running[0].wait(20)
        except subprocess.TimeoutExpired:
            running[0].kill()
        log.close()
    medians: dict[str, Any] = {}
    for label in trees:
        mine = [r for r in rows if r["code"] == label]
        if mine:
            medians[label] = {
                k: round(statistics.median(r[k] for r in mine), 2)
                for k in mine[0]
                if k not in ("code", "timeline")
            }
    return {"runs": rows, "medians": medians}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the other source tree (e.g. /work/main)")
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--processes", type=int, default=20)
    p.add_argument("--workers", type=int, default=4, help="simulator processes")
    p.add_argument("--rounds", type=int, default=3, help="restarts of each tree")
    p.add_argument("--settle", type=float, default=8, help="seconds between restarts")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--profile", default=None, help="py-spy each restarted master into this dir")
    p.add_argument("--profile-seconds", type=int, default=15, help="from the restart")
    p.add_argument(
        "--master-nice",
        type=int,
        default=0,
        help="niceness of the masters (e.g. -10 as root on a machine others load)",
    )
    args = p.parse_args()
    compile_sources()
    compile_sources(Path(args.base))
    print(json.dumps(asyncio.run(run(args)), indent=1))


if __name__ == "__main__":
    main()
