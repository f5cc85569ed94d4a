"""gdosctl figures: a cold `gdosctl --version`; `gdosctl ps` with 1,000 instances on the master
(simulated agents over real sockets, bench/fleet.py) and with 100, beside `pm2 ls` and
`supervisorctl status` of 100 real processes in the same run; `gdosctl push` of a 1 GiB package
against the raw tus upload of bench/upload.py (sendfile, no client CPU).

    .venv/bin/python bench/cli.py                      # everything
    .venv/bin/python bench/cli.py --only version --only ps --push-mib 256

Each figure is the median (and minimum) of `--rounds` runs of a new process, as a user's shell
starts it: `.venv/bin/gdosctl`, the console script. The peers list 100 processes, not 1,000:
a thousand real peer processes would need some 10 GiB on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import fleet, upload  # noqa: E402
from bench.batch import PM2_CALL, PY, ensure_pm2, ensure_python_peers, write_prog  # noqa: E402
from console.client import TUS_CHUNK  # noqa: E402
from tests.support import ADMIN_PASSWORD, Master, build_package, free_port, wait_for  # noqa: E402

GDOSCTL = str(ROOT / ".venv" / "bin" / "gdosctl")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1/5 min)"


def timed(argv: list[str], rounds: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Seconds per run of a new process (output thrown away), after one warm-up run."""
    runs = []
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        if i:
            runs.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(runs) * 1000, "min_ms": min(runs) * 1000}


def ctl_env(home: Path, master: str, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDOS_")}
    return {**env, "XDG_CONFIG_HOME": str(home), "GDOS_MASTER": master, "GDOS_TOKEN": token}


# -- ps ------------------------------------------------------------------------------------------


class SimFleet:
    """Simulated agents on a thread of their own, answering deploys and starts."""

    def __init__(self, master: str, token: str, agents: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.sims: list[fleet.SimAgent] = []
        self.nodes: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(master, token, agents), self.loop).result(120)

    async def _start(self, master: str, token: str, agents: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            for n in range(agents):
                node_id, secret = await fleet.enroll(http, master, token, f"sim-{n:03d}")
                sim = fleet.SimAgent(master, node_id, secret, f"sim-{n:03d}")
                self.sims.append(sim)
                self.nodes.append(node_id)
                self.tasks.append(asyncio.create_task(sim.run()))
        await asyncio.gather(*(s.connected.wait() for s in self.sims))

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _stop(self) -> None:
        for sim in self.sims:
            sim.stop()
            if sim.ws is not None:
                with contextlib.suppress(Exception):
                    await sim.ws.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def with_instances(
    master: Master, api: httpx.Client, sims: SimFleet, count: int, work: Path
) -> str:
    """A system of `count` running instances over the simulated nodes; returns its id."""
    pkg = build_package(work, "cli-bench", "1.0.0")
    api.post(
        "/api/v1/packages", content=pkg.read_bytes(), headers={"Content-Type": "application/zip"}
    )
    system = api.post("/api/v1/systems", json={"name": f"cli{count}"}).json()
    module = api.post(
        f"/api/v1/systems/{system['id']}/modules", json={"name": "svc", "package": "cli-bench"}
    ).json()
    for i in range(count):
        node = sims.nodes[i % len(sims.nodes)]
        r = api.post("/api/v1/instances", json={"module_id": module["id"], "node_id": node})
        assert r.status_code == 202, r.text
    wait_for(
        lambda: all(
            i["state"] == "stopped"
            for i in api.get("/api/v1/instances", params={"system_id": system["id"]}).json()
        ),
        120,
        what="deploys",
    )
    op = api.post(f"/api/v1/systems/{system['id']}/start").json()
    wait_for(
        lambda: api.get(f"/api/v1/operations/{op['operation_id']}").json()["state"] != "running",
        120,
        what="start",
    )
    time.sleep(3)  # a few metric ticks: ps shows CPU and memory
    return str(system["id"])


def bench_ps(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    master = Master(work / "master")
    master.launch()
    sims = None
    try:
        api = httpx.Client(base_url=master.url, timeout=120)
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        sims = SimFleet(master.url, master.join_token, args.agents)
        env = ctl_env(work / "home", master.url, token)
        out: dict[str, Any] = {}
        for count in sorted({args.peers, args.instances}):
            system_id = with_instances(master, api, sims, count, work / "pkgs")
            print(f"ps with {count} instances ({load()})", flush=True)
            shown = subprocess.run(
                [GDOSCTL, "ps", "--system", f"cli{count}", "-o", "json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert len(json.loads(shown.stdout)) == count
            out[f"gdosctl ps, {count} instances (table)"] = timed(
                [GDOSCTL, "ps", "--system", system_id], args.rounds, env
            )
            out[f"gdosctl ps -o json, {count} instances"] = timed(
                [GDOSCTL, "ps", "--system", system_id, "-o", "json"], args.rounds, env
            )
        total = len(api.get("/api/v1/instances").json())
        out[f"gdosctl ps, all {total} instances (table)"] = timed([GDOSCTL, "ps"], args.rounds, env)
        return out
    finally:
        if sims is not None:
            sims.stop()
        master.stop()


def bench_supervisorctl(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    py = ensure_python_peers()
    prog = write_prog(work)
    port = free_port()
    programs = "".join(
        f"\n[program:p{i}]\ncommand={PY} {prog} p{i}\nautostart=true\nstartsecs=0\n"
        f"stdout_logfile={work}/logs/p{i}.out\nstderr_logfile={work}/logs/p{i}.err\n"
        for i in range(args.peers)
    )
    conf = work / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\n"
        f"nodaemon=true\n[inet_http_server]\nport=127.0.0.1:{port}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\n{programs}"
    )
    daemon = subprocess.Popen(
        [str(py.parent / "supervisord"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rpc: Any = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    try:
        wait_for(
            lambda: (
                sum(p["statename"] == "RUNNING" for p in rpc.supervisor.getAllProcessInfo())
                == args.peers
            ),
            60,
            what="supervisord's programs",
        )
        print(f"supervisorctl status ({load()})", flush=True)
        ctl = [str(py.parent / "supervisorctl"), "-c", str(conf), "status"]
        return {f"supervisorctl status, {args.peers} processes": timed(ctl, args.rounds)}
    finally:
        daemon.terminate()
        daemon.wait(60)


def bench_pm2_ls(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    pm2 = ensure_pm2()
    prog = write_prog(work)
    apps = [
        {
            "name": f"p{i}",
            "script": str(prog),
            "interpreter": PY,
            "args": [f"p{i}"],
            "out_file": f"{work}/logs/p{i}.out",
            "error_file": f"{work}/logs/p{i}.err",
        }
        for i in range(args.peers)
    ]
    (work / "apps.json").write_text(json.dumps(apps))
    (work / "call.js").write_text(PM2_CALL)
    env = {**os.environ, "PM2_HOME": str(work / "pm2-home")}
    client = subprocess.Popen(
        ["node", str(work / "call.js"), str(pm2), str(work / "apps.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert client.stdin is not None and client.stdout is not None

    def call(cmd: str) -> Any:
        client.stdin.write(cmd + "\n")  # type: ignore[union-attr]
        client.stdin.flush()  # type: ignore[union-attr]
        return json.loads(client.stdout.readline())  # type: ignore[union-attr]

    try:
        assert json.loads(client.stdout.readline())["ready"]
        call("start")
        wait_for(lambda: len(call("pids")) == args.peers, 60, what="pm2's processes")
        print(f"pm2 ls ({load()})", flush=True)
        ls = ["node", str(pm2 / "bin" / "pm2"), "ls"]
        return {f"pm2 ls, {args.peers} processes": timed(ls, args.rounds, env)}
    finally:
        with contextlib.suppress(Exception):
            call("kill")
        client.kill()


# -- push ----------------------------------------------------------------------------------------


def bench_push(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    path = upload.build(work / "push.zip", args.push_mib << 20, "1.0.0")
    master = Master(work / "push-master", extra=["--max-package-size", str(8 << 30)])
    master.launch()
    try:
        api = httpx.Client(base_url=master.url, timeout=600)
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        env = ctl_env(work / "home", master.url, token)
        raw, ctl = [], []
        for _ in range(args.push_rounds):  # alternating, so that drift hits both alike
            raw.append(
                upload.run(master, api, token, path, upload.tus_upload, TUS_CHUNK)["seconds"]
            )
            os.sync()
            time.sleep(0.5)
            t0 = time.perf_counter()
            subprocess.run(
                [GDOSCTL, "push", str(path)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            ctl.append(time.perf_counter() - t0)
            for pkg in api.get("/api/v1/packages", params={"name": "bench"}).json():
                api.delete(f"/api/v1/packages/{pkg['id']}")
        mib = args.push_mib
        r, c = statistics.median(raw), statistics.median(ctl)
        print(f"push ({load()})", flush=True)
        return {
            f"raw tus upload, {mib} MiB, {TUS_CHUNK >> 20} MiB PATCHes": {
                "median_s": r,
                "MB_per_s": mib * 1.048576 / r,
                "runs_s": raw,
            },
            f"gdosctl push, {mib} MiB": {
                "median_s": c,
                "MB_per_s": mib * 1.048576 / c,
                "runs_s": ctl,
            },
            "gdosctl push / raw": {"ratio": c / r},
        }
    finally:
        master.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", choices=["version", "ps", "peers", "push"])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--agents", type=int, default=10, help="simulated nodes the instances are on")
    p.add_argument("--peers", type=int, default=100, help="processes under pm2 and supervisord")
    p.add_argument("--push-mib", type=int, default=1024)
    p.add_argument("--push-rounds", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="work files (default: a temp dir)")
    args = p.parse_args()
    only = set(args.only or ["version", "ps", "peers", "push"])
    print(
        f"machine: {os.cpu_count()} CPUs, {load()}, {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC"
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        if "version" in only:
            print(f"gdosctl --version ({load()})", flush=True)
            results["gdosctl --version (cold process)"] = timed(
                [GDOSCTL, "--version"], args.rounds * 3
            )
        if "ps" in only:
            results.update(bench_ps(args, work / "ps"))
        if "peers" in only:
            results.update(bench_supervisorctl(args, work / "supervisord"))
            results.update(bench_pm2_ls(args, work / "pm2"))
        if "push" in only:
            results.update(bench_push(args, work / "push"))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
