"""Agent footprint (issue 4): one real agent supervising and monitoring N processes at 1 Hz,
next to PM2 (which also samples CPU and memory of each process) with the same N in the same run.

    .venv/bin/python -m bench.agent_footprint              # 200 processes, 60 s measured
    .venv/bin/python -m bench.agent_footprint --processes 1000 --seconds 60
    .venv/bin/python -m bench.agent_footprint --base /tmp/main-tree   # and main's agent, alternated

Both run the same trivial service (`sleep`), so what is measured is the supervisor:
- GDOS: a master and one agent (`--metrics-interval 1`); the agent deploys and starts N
  instances through the API, then samples them every second and sends one `metrics` message.
- PM2: installed on first use with `npm install --prefix bench/.node pm2` (Node 20), its own
  PM2_HOME; a small client asks the daemon for its process list with CPU and memory every
  second (`pm2.list`, what `pm2 monit` does), which makes PM2 sample every process at 1 Hz.
- The limit for Python: a plain psutil loop in a process of its own, sampling the agent's same N
  service processes at 1 Hz (cpu_percent, memory_info, io_counters each, as an agent must).
Reported: RSS (average and peak) and CPU (percent of one core over the window) of the agent
process, of the psutil loop and of PM2's daemon (its polling client shown apart).
`--processes 1000` is the scale target. With `--base DIR` (another source tree, e.g. main's) the
agent is then stopped and started again from DIR and from this tree in turn, `--rounds` times
each, on the same running services (re-adopted at each start), and both are measured alike.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from bench.fleet_bench import raise_nofile  # noqa: E402
from tests.support import Agent, Api, Master, build_package, kill_services_under  # noqa: E402

NODE_DIR = ROOT / "bench" / ".node"
SLEEPER = "#!/bin/sh\nexec sleep 1000000\n"
POLLER = """
const pm2 = require(process.argv[2]);
pm2.connect((err) => {
  if (err) { console.error(err); process.exit(2); }
  setInterval(() => pm2.list((e, list) => {
    if (e) { console.error(e); return; }
    let cpu = 0, mem = 0;
    for (const p of list) { cpu += p.monit.cpu; mem += p.monit.memory; }
    process.stdout.write(JSON.stringify({n: list.length, cpu, mem}) + "\\n");
  }), 1000);
});
"""


# The limit for Python: the least a Python process can do to sample the same processes at 1 Hz.
PSUTIL_LOOP = """
import sys, time
import psutil
procs = [psutil.Process(int(pid)) for pid in sys.argv[1].split(",")]
tick = time.monotonic()
while True:
    for p in procs:
        try:
            with p.oneshot():
                p.cpu_percent(), p.memory_info(), p.io_counters()
        except psutil.Error:
            pass
    tick += 1.0
    time.sleep(max(0.0, tick - time.monotonic()))
"""


def ensure_pm2() -> Path:
    pm2 = NODE_DIR / "node_modules" / ".bin" / "pm2"
    if not pm2.exists():
        print("installing pm2 into bench/.node (once)", flush=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(NODE_DIR), "pm2"], check=True)
    return pm2


class Sampler:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.rss: list[float] = []
        self.cpu0 = sum(self.proc.cpu_times()[:2])
        self.t0 = time.monotonic()

    def tick(self) -> None:
        self.rss.append(self.proc.memory_info().rss / 2**20)

    def cpu_percent(self) -> float:
        return (sum(self.proc.cpu_times()[:2]) - self.cpu0) / (time.monotonic() - self.t0) * 100


def run_gdos(tmp: Path, n: int, interval: float, started: list) -> tuple[Master, Agent, Api]:
    master = Master(tmp / "master", extra=["--log-level", "warning"])
    started.append(master)
    master.launch()
    api = master.api()
    agent = Agent(
        master, tmp / "agent", extra=["--metrics-interval", str(interval), "--log-level", "warning"]
    )
    started.append(agent)
    node = agent.start_and_wait(api)
    time.sleep(3)
    idle = psutil.Process(agent.pid).memory_info().rss / 2**20
    print(f"agent RSS with no instance: {idle:.1f} MiB", flush=True)
    pkg = build_package(tmp / "pkg", name="sleeper", files={"bin/run": SLEEPER})
    api.upload(pkg)
    system = api.post("/systems", {"name": "footprint"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "s", "package": "sleeper"})
    # Deploys go in batches of 8: each package download holds one of the master's 15 database
    # connections while it streams, and 200 at once starve the pool (reported to the lead).
    ids: list[str] = []
    deadline = time.monotonic() + max(600, 2 * n)  # a thousand deploys take a while
    while len(ids) < n:
        batch = [
            api.post("/instances", {"module_id": module["id"], "node_id": node})["id"]
            for _ in range(min(8, n - len(ids)))
        ]
        ids += batch
        while time.monotonic() < deadline:
            states = [i["state"] for i in api.get("/instances", params={"system_id": system["id"]})]
            if states.count("stopped") == len(ids):
                break
            time.sleep(0.2)
    for iid in ids:
        api.post(f"/instances/{iid}/start", expect=202)
    while time.monotonic() < deadline:
        states = [i["state"] for i in api.get("/instances", params={"system_id": system["id"]})]
        if states.count("running") == n:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"not all {n} instances are running: {states}")
    return master, agent, api


def run_pm2(tmp: Path, n: int) -> tuple[dict[str, str], subprocess.Popen[str], int]:
    pm2 = ensure_pm2()
    home = tmp / "pm2home"
    env = {**os.environ, "PM2_HOME": str(home)}
    apps = [
        {
            "name": f"s{i}",
            "script": "sleep",
            "args": "1000000",
            "interpreter": "none",
            "autorestart": True,
        }
        for i in range(n)
    ]
    eco = tmp / "ecosystem.json"
    eco.write_text(json.dumps({"apps": apps}))
    subprocess.run([str(pm2), "start", str(eco)], env=env, check=True, capture_output=True)
    daemon = int((home / "pm2.pid").read_text())
    script = tmp / "poller.js"
    script.write_text(POLLER)
    poller = subprocess.Popen(
        ["node", str(script), str(NODE_DIR / "node_modules" / "pm2")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return env, poller, daemon


def kill_pm2_daemon(home: Path) -> None:
    """The PM2 daemon and the apps it still runs, if `pm2 kill` left any."""
    try:
        daemon = psutil.Process(int((home / "pm2.pid").read_text()))
        if str(home) not in " ".join(daemon.cmdline()):
            return  # gone, and its PID is someone else's now
        procs = [*daemon.children(recursive=True), daemon]
    except (OSError, ValueError, psutil.Error):
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


def start_psutil_loop(api: Api, n: int) -> subprocess.Popen[bytes]:
    """A plain psutil loop over the agent's N service processes, in a process of its own."""
    pids = [str(i["pid"]) for i in api.get("/instances") if i.get("pid")]
    if len(pids) != n:
        raise RuntimeError(f"{len(pids)} of {n} instances report a pid")
    return subprocess.Popen([sys.executable, "-c", PSUTIL_LOOP, ",".join(pids)])


def agent_from(root: Path, master: Master, tmp: Path, interval: float) -> Agent:
    """An agent on the bench's work dir, its code from the source tree `root`."""
    agent = Agent(
        master, tmp / "agent", extra=["--metrics-interval", str(interval), "--log-level", "warning"]
    )
    agent.env["PYTHONPATH"] = str(root) + os.pathsep + agent.env["PYTHONPATH"]
    return agent


def alternate(
    trees: dict[str, Path], started: list, agent: Agent, api: Api, args: argparse.Namespace
) -> None:
    """Restart the agent from each tree in turn on the same services; measure each alike.
    `started` (what the bench stops at the end) always holds the agent of the moment."""
    master, n, tmp = agent.master, args.processes, agent.work_dir.parent
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, root in trees.items():
            agent.stop()
            at = started.index(agent)
            agent = started[at] = agent_from(root, master, tmp, args.metrics_interval)
            agent.start_and_wait(api)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                states = [i["state"] for i in api.get("/instances")]
                if states.count("running") == n:
                    break
                time.sleep(0.5)
            time.sleep(10)  # re-adoption done, first samples sent
            s = Sampler(agent.pid)
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                time.sleep(1)
                s.tick()
            cpu, rss = s.cpu_percent(), statistics.mean(s.rss)
            figures[name].append((cpu, rss))
            print(
                f"  round {r + 1} {name}: agent {cpu:.2f} % of a core, RSS {rss:.1f} MiB "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    for name, got in figures.items():
        print(
            f"{name}: median {statistics.median(c for c, _ in got):.2f} % of a core, "
            f"RSS {statistics.median(m for _, m in got):.1f} MiB over {len(got)} rounds"
        )


def main() -> None:
    compile_sources()
    p = argparse.ArgumentParser(description="agent footprint vs PM2 (issue 4)")
    p.add_argument("--processes", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--no-pm2", action="store_true")
    p.add_argument("--no-psutil-loop", action="store_true", help="without the limit row")
    p.add_argument(
        "--metrics-interval", type=float, default=1.0, help="the agent's (0: monitoring off)"
    )
    p.add_argument("--base", default=None, help="another source tree's agent, alternated")
    p.add_argument("--rounds", type=int, default=3, help="with --base: restarts of each")
    args = p.parse_args()
    if args.base:
        compile_sources(Path(args.base).resolve())
    tmp = Path(f"/tmp/gdos-footprint-{os.getpid()}")
    tmp.mkdir(parents=True)
    n = args.processes
    raise_nofile()  # room for a thousand services' log files in the agent, which inherits it
    print(
        f"agent footprint: {n} processes, {args.seconds:.0f} s; {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    master = agent = None
    poller = None
    loop: subprocess.Popen[bytes] | None = None
    pm2_env: dict[str, str] | None = None
    ok = False
    started: list = []  # stopped even when setting up fails half-way
    try:
        master, agent, api = run_gdos(tmp, n, args.metrics_interval, started)
        if not args.no_psutil_loop:
            loop = start_psutil_loop(api, n)
        if not args.no_pm2:
            pm2_env, poller, daemon = run_pm2(tmp, n)
        time.sleep(5)  # settle: first samples, PM2's first list
        samplers = {"gdos agent": Sampler(agent.pid)}
        if loop is not None:
            samplers["psutil loop (limit)"] = Sampler(loop.pid)
        if poller is not None:
            samplers["pm2 daemon"] = Sampler(daemon)
            samplers["pm2 client (poller)"] = Sampler(poller.pid)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(1)
            for s in samplers.values():
                s.tick()
        if poller is not None:
            assert poller.stdout is not None
            lines = [poller.stdout.readline() for _ in range(2)]
            print(f"pm2 answers with every process sampled: {lines[-1].strip()}")
        node = api.get("/nodes")[0]
        samples = api.get(f"/nodes/{node['id']}/metrics", params={"seconds": 10})["samples"]
        page = httpx.get(
            master.url + "/metrics", headers={"Authorization": f"Bearer {api.token}"}
        ).text
        reported = sum(
            1 for line in page.splitlines() if line.startswith("gdos_instance_cpu_percent{")
        )
        print(f"\n{'process':24} {'RSS avg MiB':>12} {'RSS max MiB':>12} {'CPU % of a core':>16}")
        for name, s in samplers.items():
            print(
                f"{name:24} {statistics.mean(s.rss):12.1f} {max(s.rss):12.1f} {s.cpu_percent():16.2f}"
            )
        print(
            f"\nmaster sees {reported} instances with live CPU figures; node samples in the last 10 s: {len(samples)}"
        )
        print(f"load at the end: {os.getloadavg()[0]:.1f}")
        if args.base:
            print(f"\nthe agent alone, restarted in turn ({args.seconds:.0f} s each):", flush=True)
            trees = {"base": Path(args.base).resolve(), "this": ROOT}
            alternate(trees, started, agent, api, args)
        ok = True
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
        if poller is not None:
            poller.kill()
        if pm2_env is not None:
            with contextlib.suppress(Exception):
                subprocess.run(
                    [str(NODE_DIR / "node_modules" / ".bin" / "pm2"), "kill"],
                    env=pm2_env,
                    capture_output=True,
                    timeout=60,
                )
            # `pm2 kill` stops a thousand apps one by one and may not be done in time.
            kill_pm2_daemon(tmp / "pm2home")
        for proc in reversed(started):
            proc.stop()
        kill_services_under(tmp)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", flush=True)


if __name__ == "__main__":
    main()
