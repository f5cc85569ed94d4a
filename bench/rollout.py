#!/usr/bin/env python3
"""A rollout of 20 instances over 5 real agents with a 50 MiB package, batch 4; then a rollback
from the kept releases; PM2 `reload` of the same 20 programs on one host beside it.

    .venv/bin/python bench/rollout.py                 # everything (a few minutes)
    .venv/bin/python bench/rollout.py --only gdos     # without PM2

Every service is the same small Python program with known costs: it listens on its port 0.5 s
after it starts and exits 0.3 s after SIGTERM; it writes when it started (its process's creation
time), when it answered, when SIGTERM came and when it exited to a shared events file. Measured:
  rollout       POST /modules/{id}/rollout until its `succeeded` event: the prepare phase
                (every node fetches and unpacks beside the running release; nothing stops) and
                the rolling phase (the first SIGTERM to the last new process answering), against
                the services' own time: 4 of them started together by the bench itself until all
                answer, plus stopped together until all exited, times the number of batches.
  downtime      per instance, from the moment its port stops answering to the moment it
                answers again (a prober per port, every 5 ms), median and max.
  rollback      POST /modules/{id}/rollback (all at once, from kept releases): total, against
                the services' own time (20 started, then stopped, together by the bench), and per
                instance the switch (SIGTERM of the old process to the new one answering); bytes
                downloaded (agents log every fetch: none expected).
  agent RSS     of the agents while they unpack the 50 MiB release (sampled every 20 ms),
                the largest growth over their RSS just before.
  PM2           `pm2.reload('all')` of the same 20 programs (fork mode), same probers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from bench.batch import OpWatcher, ensure_pm2, load  # noqa: E402
from tests.support import Agent, Master, free_port, wait_for  # noqa: E402

LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "info")  # the agents log each fetch at info
PY = sys.executable
STOP_S, READY_S = 0.3, 0.5

SERVICE = """\
import os, signal, socket, sys, time
STOP_S, READY_S = float(sys.argv[4]), float(sys.argv[5])
port = int(sys.argv[1]); version = sys.argv[2]; events = sys.argv[3]
name = os.environ.get("GDOS_INSTANCE_NAME") or os.environ.get("name") or f"p{port}"
def event(kind, t):
    with open(events, "a") as f:
        f.write(f"{name} {kind} {version} {t:.6f}\\n")
def on_term(*_):
    event("sigterm", time.time())
    time.sleep(STOP_S)
    event("exit", time.time())
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
event("begin", time.time())
time.sleep(READY_S)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(64)
event("ready", time.time())
while True:
    c, _ = s.accept(); c.close()
"""


def package(dest: Path, version: str, events: Path, size: int) -> Path:
    path = dest / f"svc-{version}.zip"
    manifest = {
        "name": "svc",
        "version": version,
        "entrypoint": "bin/run",
        "args": ["${PORT}", version, str(events), str(STOP_S), str(READY_S)],
        "health": {"tcp": "${PORT}", "interval": 0.5},
        "stop_timeout": 10,
        "keep_releases": 3,
    }
    run = f'#!/bin/sh\nexec "{PY}" "$(dirname "$0")/service.py" "$@"\n'
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("service.json", json.dumps(manifest))
        for name, text in (("bin/run", run), ("bin/service.py", SERVICE)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            zf.writestr(info, text)
        info = zipfile.ZipInfo("data/blob.bin")  # stored: incompressible, as a real bundle is
        zf.writestr(info, os.urandom(size), compress_type=zipfile.ZIP_STORED)
    return path


class Prober:
    """Connects to each port every 5 ms; records the gaps (closed -> answering again)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.gaps: dict[str, list[float]] = {k: [] for k in ports}
        self._down: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, port in self.ports.items():
                now = time.perf_counter()
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pass
                    if key in self._down:
                        self.gaps[key].append(now - self._down.pop(key))
                except OSError:
                    self._down.setdefault(key, now)
            time.sleep(0.005)

    def close(self) -> dict[str, list[float]]:
        self._stop.set()
        self._thread.join()
        return self.gaps


def read_events(path: Path) -> list[tuple[str, str, str, float]]:
    out = []
    for line in path.read_text().splitlines():
        name, kind, version, t = line.split()
        out.append((name, kind, version, float(t)))
    return out


def switches(events: list[tuple[str, str, str, float]], old: str, new: str) -> list[float]:
    """Per instance: SIGTERM to its old process -> its new one answering (the service's clock)."""
    term: dict[str, float] = {}
    ready: dict[str, float] = {}
    for name, kind, version, t in events:
        if version == old and kind == "sigterm":
            term[name] = t
        elif version == new and kind == "ready":
            ready[name] = t
    return [ready[n] - term[n] for n in term if n in ready]


def baseline(work: Path, k: int, rounds: int = 3) -> dict[str, float]:
    """The services' own time, with no manager: `k` of them started together until all answer,
    then stopped together (SIGTERM) until all have exited; the median of `rounds`."""
    work.mkdir(parents=True, exist_ok=True)
    prog = work / "service.py"
    prog.write_text(SERVICE)
    starts, stops = [], []
    for _ in range(rounds):
        ports = [free_port() for _ in range(k)]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [PY, str(prog), str(p), "b", str(work / "events"), str(STOP_S), str(READY_S)]
            )
            for p in ports
        ]
        wait_for(functools.partial(all_answer, ports), 60, 0.005, "the services")
        starts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        stops.append(time.perf_counter() - t0)
        time.sleep(0.5)
    return {"start_s": statistics.median(starts), "stop_s": statistics.median(stops)}


def summary(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"


def rss_sampler(pids: list[int], out: dict[int, list[float]], stop: threading.Event) -> None:
    procs = {p: psutil.Process(p) for p in pids}
    while not stop.is_set():
        for pid, proc in procs.items():
            with contextlib.suppress(psutil.Error):
                out.setdefault(pid, []).append(proc.memory_info().rss / 2**20)
        time.sleep(0.02)


def bench_gdos(work: Path, n: int, n_agents: int, size: int, batch: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    master = Master(work / "master", extra=["--log-level", "warning", "--heartbeat-grace", "15"])
    agents: list[Agent] = []
    events = work / "events"
    try:
        master.launch()
        api = master.api()
        agents = [
            Agent(master, work / f"agent-{i}", extra=["--log-level", LOG_LEVEL])
            for i in range(n_agents)
        ]
        for a in agents:
            a.start()
        nodes = []
        for a in agents:
            wait_for((a.work_dir / "agent-credential.json").exists, 60, what="enrolment")
            nodes.append(a.node_id)
        wait_for(lambda: all(x["status"] == "online" for x in api.get("/nodes")), 60)
        for v in ("1.0.0", "1.0.1"):
            api.upload(package(work, v, events, size))
        system = api.post("/systems", {"name": "bench"})
        mod = api.post(
            f"/systems/{system['id']}/modules",
            {"name": "svc", "package": "svc", "version": "1.0.0"},
        )
        ids = [
            api.post("/instances", {"module_id": mod["id"], "node_id": nodes[i % n_agents]})["id"]
            for i in range(n)
        ]
        wait_for(
            lambda: all(api.get(f"/instances/{i}")["state"] == "stopped" for i in ids), 600, 0.5
        )
        ports = {}
        for iid in ids:
            ports[iid] = free_port()
            api.request("PATCH", f"/instances/{iid}", json={"env": {"PORT": str(ports[iid])}})
        watcher = OpWatcher(master.url, api.token or "")
        op = api.post(f"/systems/{system['id']}/start", expect=202)
        assert watcher.wait(op["operation_id"], 300)[1]["state"] == "succeeded"
        names = {i["id"]: i["name"] for i in api.get(f"/instances?system_id={system['id']}")}
        time.sleep(2.0)
        res["load"] = load()

        # Rollout: prepare everywhere, then batches of `batch`.
        agent_pids = [a.pid for a in agents]
        rss: dict[int, list[float]] = {}
        base = {p: psutil.Process(p).memory_info().rss / 2**20 for p in agent_pids}
        stop = threading.Event()
        sampler = threading.Thread(target=rss_sampler, args=(agent_pids, rss, stop), daemon=True)
        sampler.start()
        prober = Prober({names[i]: p for i, p in ports.items()})
        t0 = time.perf_counter()
        op = api.post(
            f"/modules/{mod['id']}/rollout",
            {"version": "1.0.1", "batch_size": batch, "min_ready_seconds": 0},
            expect=202,
        )
        t1, final = watcher.wait(op["operation_id"], 900)
        total = t1 - t0
        assert final["state"] == "succeeded", final["error"]
        gaps = prober.close()
        stop.set()
        sampler.join()
        batches = {st["batch"] for st in final["steps"]}
        own = baseline(work / "baseline", batch)
        ideal = len(batches) * (own["start_s"] + own["stop_s"])
        evs = read_events(events)
        first_sigterm = min(t for _, kind, v, t in evs if kind == "sigterm" and v == "1.0.0")
        last_ready = max(t for _, kind, v, t in evs if kind == "ready" and v == "1.0.1")
        created = parse(final["created_at"])
        res["rollout_total_s"] = total
        res["prepare_s"] = first_sigterm - created
        res["rolling_s"] = last_ready - first_sigterm
        res["own_per_batch"] = own
        res["ideal_s"] = ideal
        res["rolling_overhead_pct"] = (res["rolling_s"] / ideal - 1) * 100
        res["total_overhead_pct"] = (total / ideal - 1) * 100
        res["switch"] = summary(switches(evs, "1.0.0", "1.0.1"))
        downtime = [g for gs in gaps.values() for g in gs]
        res["downtime"] = summary(downtime)
        res["downtime_samples"] = len(downtime)
        res["agent_rss_growth_mib"] = max(max(rss[p]) - base[p] for p in agent_pids)
        res["agent_rss_base_mib"] = statistics.median(base.values())
        res["batches"] = len(batches)

        # Rollback from the kept releases.
        fetched_before = sum(a.log_path.read_text().count("fetching package") for a in agents)
        prober = Prober({names[i]: p for i, p in ports.items()})
        t0 = time.perf_counter()
        op = api.post(f"/modules/{mod['id']}/rollback", {"min_ready_seconds": 0}, expect=202)
        t1, final = watcher.wait(op["operation_id"], 600)
        assert final["state"] == "succeeded", final["error"]
        gaps = prober.close()
        fetched_after = sum(a.log_path.read_text().count("fetching package") for a in agents)
        every = baseline(work / "baseline", n)
        res["rollback_total_s"] = t1 - t0
        res["rollback_own_s"] = every["start_s"] + every["stop_s"]
        res["rollback_switch"] = summary(switches(read_events(events), "1.0.1", "1.0.0"))
        res["rollback_downtime"] = summary([g for gs in gaps.values() for g in gs])
        res["rollback_fetches"] = fetched_after - fetched_before
        res["service_own"] = f"stop {STOP_S} s + ready {READY_S} s after start"
        watcher.close()
        api.close()
    except BaseException:
        print(f"GDOS run failed; master log tail:\n{master.tail(40)}", file=sys.stderr)
        raise
    finally:
        for a in agents:
            a.stop()
        master.stop()
        from tests.support import kill_services_under

        kill_services_under(work)
    return res


def all_answer(ports: list[int]) -> bool:
    return all(port_answers(p) for p in ports)


def port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def parse(ts: str) -> float:
    from protocol.rest import parse_iso

    return parse_iso(ts)


PM2_CALL = """
const pm2 = require(process.argv[2]);
const apps = JSON.parse(require('fs').readFileSync(process.argv[3]));
const rl = require('readline').createInterface({input: process.stdin});
pm2.connect((err) => {
  if (err) { console.error(err); process.exit(2); }
  console.log(JSON.stringify({ready: true}));
  rl.on('line', (cmd) => {
    const t0 = process.hrtime.bigint();
    const done = (e) => console.log(JSON.stringify({s: Number(process.hrtime.bigint() - t0) / 1e9, error: e ? String(e) : null}));
    if (cmd === 'start') pm2.start(apps, done);
    else if (cmd === 'reload') pm2.reload('all', done);
    else if (cmd === 'kill') pm2.killDaemon(() => { console.log('{}'); process.exit(0); });
  });
});
"""


def bench_pm2(work: Path, n: int) -> dict[str, Any]:
    pm2 = ensure_pm2()
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events"
    prog = work / "service.py"
    prog.write_text(SERVICE)
    ports = {f"p{i}": free_port() for i in range(n)}
    apps = [
        {
            "name": name,
            "script": str(prog),
            "interpreter": PY,
            "args": [str(port), "v1", str(events), str(STOP_S), str(READY_S)],
            "env": {"name": name},
            "autorestart": True,
            "kill_timeout": 10000,
            "out_file": f"{work}/{name}.out",
            "error_file": f"{work}/{name}.err",
        }
        for name, port in ports.items()
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

    def call(cmd: str) -> Any:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(cmd + "\n")
        client.stdin.flush()
        return json.loads(client.stdout.readline())

    res: dict[str, Any] = {}
    try:
        assert client.stdout is not None
        assert json.loads(client.stdout.readline())["ready"]
        call("start")
        wait_for(lambda: all(port_answers(p) for p in ports.values()), 120, 0.2, "pm2's programs")
        time.sleep(2.0)
        res["load"] = load()
        prober = Prober(ports)
        t0 = time.perf_counter()
        out = call("reload")
        # Its callback may come before every program answers again: wait for that too.
        wait_for(lambda: all(port_answers(p) for p in ports.values()), 120, 0.005, "back")
        time.sleep(0.5)
        gaps = prober.close()
        res["all_answering_again_s"] = time.perf_counter() - t0
        res["reload_s"] = out["s"]
        res["reload_error"] = out["error"]
        res["downtime"] = summary([g for gs in gaps.values() for g in gs])
        res["downtime_samples"] = sum(len(g) for g in gaps.values())
    finally:
        with contextlib.suppress(Exception):
            call("kill")
        client.kill()
    return res


def main() -> int:
    compile_sources()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--agents", type=int, default=5)
    p.add_argument("--mib", type=int, default=50)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--only", choices=["gdos", "pm2"], action="append")
    p.add_argument("--work", type=Path, default=Path("/tmp/gdos-bench-rollout"))
    args = p.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; kernel {os.uname().release}; "
        f"{os.cpu_count()} CPUs; {load()}",
        flush=True,
    )
    for tool in args.only or ["gdos", "pm2"]:
        if tool == "gdos":
            r = bench_gdos(args.work / "gdos", args.n, args.agents, args.mib << 20, args.batch)
        else:
            r = bench_pm2(args.work / "pm2", args.n)
        print(f"-- {tool}:", json.dumps(r, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
