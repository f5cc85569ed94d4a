"""Fleet benchmark (issue 4): one master, N simulated agents x M processes at 1 Hz.

    .venv/bin/python -m bench.fleet_bench                       # 1,000 agents x 20, 120 s
    .venv/bin/python -m bench.fleet_bench --agents 200 --duration 30   # a quick look

What it does, all over real sockets (see bench/fleet.py for the simulated agents):
1. starts a master (its own data dir under /tmp), enrolls every agent through the API;
2. writes the fleet's instances straight into the master's database (setup only: creating
   20,000 instances through the deploy API would take longer than the benchmark), then connects
   the agents, whose `hello` carries those instances;
3. a console connection subscribes to `metrics:<id>` of 100 instances and measures
   ingest-to-event latency (agent send -> console receive); an alert rule
   `cpu_percent > 50 for 3s` covers the whole fleet while the master's CPU and RSS are sampled;
4. near the end, 20 processes start "burning" at a known tick: breach -> `alert` event latency;
4b. command fan-out (DESIGN.md): a system with one instance on each of the fleet's agents is
   started and stopped through the API (`--fanout-rounds`), metrics still flowing: when each
   agent received its `batch`, and when the operation succeeded (every agent acknowledged);
4c. the agent channel against its limit: µs of master CPU per metrics message over the steady
   window (all the master did, over the messages the fleet sent meanwhile) beside a plain
   `json.loads` of the same message bytes in this process (and the master's msgspec decoder);
5. metrics stop; messages and rows sent are compared with what the master stored;
6. node loss: 10 agents killed (their worker process gets SIGKILL: sockets close) and 10 frozen
   (SIGSTOP: sockets stay open, silence only); time until the console sees them offline;
7. master crash: kill -9 and a restart on the same data; time until every agent of the fleet
   is back online (`GET /nodes`, polled), and the event loop's lag over that reconnect storm.

Responsiveness (issue 23), per phase (steady state, the fan-out rounds, the reconnect storm):
the master's event-loop lag as p50 / p99 / max of its own 20 ms timer samples (the master runs
with `--debug-endpoints`; `GET /api/v1/debug/loop-lag`), and an outside API probe, a process
of its own timing `GET /api/v1/nodes` every 100 ms (bench/api_probe.py). `--master-root DIR`
runs the master from another source tree (a checkout of another commit, for before/after).
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import connect

from bench import api_probe, compile_sources, fleet

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ADMIN_PASSWORD = "fleet-bench-pw"
# Over the whole fleet; the simulated processes stay far below it unless told to burn.
HOT_RULE = {"name": "hot", "metric": "cpu_percent", "op": ">", "threshold": 50, "for_seconds": 3}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def decode_limit(message: str, repeat: int = 5, number: int = 2000) -> dict[str, float]:
    """CPU µs to decode one metrics message in this process, the best of `repeat` runs: a
    plain `json.loads` (the limit for this encoding) and the master's own msgspec decoder."""
    from protocol.messages import AGENT_MESSAGE

    cpu = time.process_time  # a loaded machine's waits for a core are not the decoder's
    timers = {
        "json_loads": timeit.Timer(lambda: json.loads(message), timer=cpu),
        "msgspec_decode": timeit.Timer(lambda: AGENT_MESSAGE.decode(message), timer=cpu),
    }
    return {k: min(t.repeat(repeat, number)) / number * 1e6 for k, t in timers.items()}


async def messages_sent(groups: "list[Worker]") -> int:
    """Metrics messages the simulated agents have sent so far."""
    stats = [await g.ask({"cmd": "stats"}, "stats") for g in groups]
    return sum(int(x["metrics_messages"]) for x in stats)


def master_args(port: int, data: Path, *extra: str) -> list[str]:
    """`-m master ...` on a loopback port, its data in `data`, logging warnings only."""
    return [
        "-m",
        "master",
        "--port",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data),
        "--admin-password",
        ADMIN_PASSWORD,
        "--log-level",
        "warning",
        *extra,
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measured_setup(nice: int) -> Any:
    """For the master and the API probe: more file descriptors and, on a machine others load,
    a scheduling priority of `nice` (negative needs root) so the figures are the master's."""

    def setup() -> None:
        raise_nofile()
        if nice:
            os.nice(nice)

    return setup


SIMULATOR_NICE = 5


def simulator_setup() -> None:
    """The simulated agents stand for a thousand other machines: on this one they yield the
    CPU to the master under test (niceness applies within this benchmark's own session;
    GDOS_BENCH_SIMULATOR_NICE changes it, e.g. 0 when others load the machine and the master
    runs with `--master-nice`)."""
    raise_nofile()
    os.nice(int(os.environ.get("GDOS_BENCH_SIMULATOR_NICE", SIMULATOR_NICE)))


class Worker:
    """One `bench.fleet` process and its JSON-lines conversation."""

    def __init__(self, name: str, master: str, token: str, first: int, count: int, state: Path):
        self.name = name
        self.popen = subprocess.Popen(
            [
                PY,
                "-m",
                "bench.fleet",
                "--master",
                master,
                "--token",
                token,
                "--agents",
                str(count),
                "--first",
                str(first),
                "--state-dir",
                str(state),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=simulator_setup,
        )
        self.nodes: list[str] = []

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(cmd) + "\n")
        self.popen.stdin.flush()

    def read(self, event: str, timeout: float = 600) -> dict[str, Any]:
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} exited")
            msg = json.loads(line)
            if msg.get("event") == event:
                return msg
        raise TimeoutError(event)

    async def ask(self, cmd: dict[str, Any], event: str) -> dict[str, Any]:
        self.send(cmd)
        return await asyncio.to_thread(self.read, event)


class Console:
    """The console's event stream: records metrics latencies, node offline and alert events."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.replace("http://", "ws://") + "/api/v1/events"
        self.token = token
        self.latencies: list[float] = []
        self.measuring = False
        self.offline_at: dict[str, float] = {}
        self.alerts: dict[str, tuple[float, dict[str, Any]]] = {}
        self.ops_done: dict[str, tuple[float, dict[str, Any]]] = {}  # operation id -> final event
        self.events = 0
        self.ready = asyncio.Event()
        self.keys: list[str] = []
        self.reconnects = 0

    async def run(self) -> None:
        """Like the console: when the master cuts a slow reader off (1013), connect again."""
        while True:
            try:
                await self._run()
            except Exception as exc:
                self.reconnects += 1
                print(f"console stream ended ({exc!r}); reconnecting", flush=True)
                await asyncio.sleep(0.5)

    async def _run(self) -> None:
        async with connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            max_size=16 << 20,
            proxy=None,
        ) as ws:
            # Like the console: a burst of events comes as one JSON array.
            await ws.send(json.dumps({"batch": True}))
            if self.keys:
                await ws.send(json.dumps({"subscribe": self.keys}))
            self.ready.set()
            async for raw in ws:
                now = time.time()
                decoded = json.loads(raw)
                for msg in decoded if isinstance(decoded, list) else [decoded]:
                    self._seen(now, msg)

    def _seen(self, now: float, msg: dict[str, Any]) -> None:
        self.events += 1
        topic, data = msg["topic"], msg["data"]
        if topic == "metrics" and self.measuring:
            sent = parse_iso(data["ts"])
            self.latencies.append(now - sent)
        elif topic == "node" and data.get("status") == "offline":
            self.offline_at.setdefault(data["id"], now)
        elif topic == "alert" and data.get("state") == "firing":
            self.alerts.setdefault(data["target_id"], (now, data))
        elif topic == "operation" and data.get("state") != "running":
            self.ops_done.setdefault(data["id"], (now, data))


def parse_iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def seed_instances(
    db: Path | str, nodes: list[str], per_node: int, name: str = "fleet", state: str = "running"
) -> tuple[str, dict[str, list[str]]]:
    """Setup shortcut: one system and per_node instances per node, written directly into the
    master's database (a SQLite file, or a database URL)."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine, insert

    from master.db import models

    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    now = time.time()
    system_id = secrets.token_hex(6)
    mapping: dict[str, list[str]] = {}
    rows = []
    for n, node_id in enumerate(nodes):
        ids = [secrets.token_hex(6) for _ in range(per_node)]
        mapping[node_id] = ids
        for j, iid in enumerate(ids):
            rows.append(
                {
                    "id": iid,
                    "system_id": system_id,
                    "module_id": None,
                    "node_id": node_id,
                    "name": f"{name[0]}{n:05d}-p{j:02d}",
                    "package_id": None,
                    "version": "1.0",
                    "state": state,
                    "desired_state": state,
                    "health": "unknown",
                    "pid": 10_000 + j if state == "running" else None,
                    "started_at": now if state == "running" else None,
                    "restarts": 0,
                    "exit_code": None,
                    "last_error": None,
                    "adopted": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    with engine.begin() as conn:
        conn.execute(
            insert(models.System),
            [{"id": system_id, "name": name, "description": "fleet bench", "created_at": now}],
        )
        conn.execute(insert(models.Instance), rows)
    engine.dispose()
    return system_id, mapping


async def fanout(
    api: httpx.Client, console: Console, workers: list[Worker], system_id: str, rounds: int
) -> dict[str, Any]:
    """DESIGN.md's command fan-out: a system start (then stop) over one instance on each agent
    of the fleet, while the fleet's metrics flow. Per round: when each agent received its
    `batch` command (the simulators note the wall time; same clock) and when the operation
    succeeded on the event stream, i.e. every agent's result and report applied by the master."""
    received: list[float] = []
    done: dict[str, list[float]] = {"start": [], "stop": []}
    windows: list[Window] = []  # from each POST to its operation's end
    agents = sum(len(g.nodes) for g in workers)
    for _ in range(rounds):
        for action in ("start", "stop"):
            await asyncio.sleep(2.0)
            t0 = time.time()
            # A connection of its own: a pooled one the master closed meanwhile is reset.
            where = f"{str(api.base_url).rstrip('/')}/systems/{system_id}/{action}"
            reply = await asyncio.to_thread(httpx.post, where, headers=api.headers, timeout=60)
            reply.raise_for_status()
            op_id = reply.json()["operation_id"]
            deadline = time.monotonic() + 120
            while op_id not in console.ops_done and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            at, final = console.ops_done[op_id]
            windows.append((t0, at))
            if final["state"] != "succeeded":
                raise RuntimeError(f"fan-out {action} ended {final['state']}: {final.get('error')}")
            done[action].append(at - t0)
            got = [
                t for g in workers for t in (await g.ask({"cmd": "batches"}, "batches"))["received"]
            ]
            if len(got) != agents:
                raise RuntimeError(f"{len(got)} of {agents} agents received the {action} command")
            received.extend(t - t0 for t in got)
    ms = [x * 1000 for x in received]
    return {
        "fanout_agents": agents,
        "fanout_rounds": rounds,
        "fanout_command_received_ms_p50": round(pct(ms, 50), 1),
        "fanout_command_received_ms_p99": round(pct(ms, 99), 1),
        "fanout_command_received_ms_max": round(max(ms), 1),
        "fanout_start_all_acked_s": [round(x, 3) for x in done["start"]],
        "fanout_stop_all_acked_s": [round(x, 3) for x in done["stop"]],
        "fanout_windows": windows,
    }


Window = tuple[float, float]  # wall-clock start and end


def _inside(t: float, windows: list[Window]) -> bool:
    return any(start <= t <= end for start, end in windows)


def spread(prefix: str, values: list[float]) -> dict[str, Any]:
    """p50 / p99 / max of milliseconds, under `prefix`."""
    return {
        f"{prefix}_p50": round(pct(values, 50), 1),
        f"{prefix}_p99": round(pct(values, 99), 1),
        f"{prefix}_max": round(max(values, default=float("nan")), 1),
        f"{prefix}_n": len(values),
    }


def loop_lag(api: httpx.Client, phase: str, windows: list[Window]) -> dict[str, Any]:
    """The master's own lag samples over the phase's windows. `loop_busy` is the part of each
    lateness the master spent on the CPU (at most the CPU it used meanwhile): on a machine
    short of cores the rest is waiting for one, which the master cannot help."""
    since = min(start for start, _ in windows) - 1
    body = api.get("/debug/loop-lag", params={"since": since}).json()
    inside = [(lag, cpu) for t, lag, cpu in body["samples"] if _inside(t, windows)]
    out = spread(f"loop_lag_ms_{phase}", [lag * 1000 for lag, _ in inside])
    out.update(spread(f"loop_busy_ms_{phase}", [min(lag, cpu) * 1000 for lag, cpu in inside]))
    return out


def start_up(api: httpx.Client, t0: float) -> dict[str, Any]:
    """Seconds from `t0` (the kill) to each phase the restarted master marked (empty for a
    tree without `/debug/start-up`), and how many hellos it applied."""
    out: dict[str, Any] = {}
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        body = api.get("/debug/start-up").json()
        for phase, at in sorted(body["marks"].items(), key=lambda kv: kv[1]):
            out[phase] = round(at - t0, 3)
        out["hellos"] = body["counts"].get("hellos_applied", 0)
    return out


def probed(
    rows: list[tuple[float, float, int]], phase: str, windows: list[Window]
) -> dict[str, Any]:
    """The outside probe's answers over the phase's windows; failures counted apart."""
    inside = [(ms, status) for t, ms, status in rows if _inside(t, windows)]
    out = spread(f"api_probe_ms_{phase}", [ms for ms, status in inside if status == 200])
    out[f"api_probe_failed_{phase}"] = sum(status != 200 for _, status in inside)
    return out


def _count_offline(log: Path) -> int:
    """Agents the master declared silent before the node-loss phase (an overloaded machine)."""
    return sum("marking offline" in line for line in log.read_text(errors="replace").splitlines())


def scrape(url: str, token: str) -> dict[str, float]:
    text = httpx.get(
        url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("gdos_master_") or line.startswith("process_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir or f"/tmp/gdos-fleet-bench-{os.getpid()}")
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    master_log = open(data / "master.log", "ab")  # noqa: SIM115
    master_root = Path(args.master_root).resolve() if args.master_root else ROOT
    env = {**os.environ, "PYTHONPATH": str(master_root)}
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []

    def launch_master() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [PY, *profile, *master_args(port, data / "master", "--debug-endpoints")],
            cwd=master_root,
            env=env,
            stdout=master_log,
            stderr=subprocess.STDOUT,
            preexec_fn=measured_setup(args.master_nice),
        )

    async def healthy() -> None:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return
            await asyncio.sleep(0.1)

    master = launch_master()
    workers: list[Worker] = []
    groups: list[Worker] = []
    probe: subprocess.Popen[bytes] | None = None
    probe_file = data / "api-probe.csv"
    result: dict[str, Any] = {
        "agents": args.agents,
        "processes": args.processes,
        "master_root": str(master_root),
        "master_nice": args.master_nice,
        "load_at_start": os.getloadavg()[0],
    }
    try:
        await healthy()
        token = httpx.post(
            url + "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        join = (data / "master" / "join-token").read_text().strip()
        state = data / "sim"
        per = -(-args.agents // args.workers)
        first = 0
        for w in range(args.workers):
            count = min(per, args.agents - first)
            workers.append(Worker(f"w{w}", url, join, first, count, state))
            first += count
        kill_group = Worker("kill", url, join, 900_000, 10, state)
        freeze_group = Worker("freeze", url, join, 910_000, 10, state)
        groups.extend([*workers, kill_group, freeze_group])
        t0 = time.monotonic()
        for g in groups:
            g.nodes = (await asyncio.to_thread(g.read, "enrolled"))["nodes"]
        print(
            f"enrolled {sum(len(g.nodes) for g in groups)} agents in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
        all_nodes = [n for g in groups for n in g.nodes]
        db_file = data / "master" / "ops_data.db"
        _, mapping = seed_instances(db_file, all_nodes, args.processes)
        # The fan-out system: one stopped instance on each agent of the measured fleet.
        fleet_nodes = [n for g in workers for n in g.nodes]
        fan_system, fan_mapping = seed_instances(db_file, fleet_nodes, 1, "fanout", "stopped")
        api = httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        api.post("/alert-rules", json=HOT_RULE).raise_for_status()

        t0 = time.monotonic()
        await asyncio.gather(
            *(
                g.ask(
                    {
                        "cmd": "connect",
                        "instances": {n: mapping[n] for n in g.nodes},
                        "stopped": {n: fan_mapping[n] for n in g.nodes if n in fan_mapping},
                    },
                    "connected",
                )
                for g in groups
            )
        )
        print(
            f"connected in {time.monotonic() - t0:.1f} s; warming up {args.warmup:.0f} s",
            flush=True,
        )
        probe = subprocess.Popen(
            [PY, "-m", "bench.api_probe", "--url", url, "--token", token, "--out", str(probe_file)],
            cwd=ROOT,
            preexec_fn=measured_setup(args.master_nice),
        )
        # The console connects once the fleet is up: during a mass connect every hello
        # republishes its instances (20,000 events) and a slow reader is cut off (1013).
        console = Console(url, token)
        watched = [ids[0] for ids in list(mapping.values())[: args.watch]]
        console.keys = [f"metrics:{iid}" for iid in watched]
        console_task = asyncio.create_task(console.run())
        await console.ready.wait()
        await asyncio.sleep(args.warmup)

        proc = psutil.Process(master.pid)
        sent_before = await messages_sent(groups)
        cpu_before = sum(proc.cpu_times()[:2])
        console.measuring = True
        steady_from = time.time()
        samples: list[tuple[float, float, float]] = []  # (t, cpu cores, rss MiB)
        last_cpu = sum(proc.cpu_times()[:2])
        last_t = time.monotonic()
        start = last_t
        burns: dict[str, float] = {}
        burn_after = max(args.duration - 35, 5)
        while time.monotonic() - start < args.duration:
            await asyncio.sleep(5)
            now = time.monotonic()
            cpu = sum(proc.cpu_times()[:2])
            samples.append(
                (now - start, (cpu - last_cpu) / (now - last_t), proc.memory_info().rss / 2**20)
            )
            last_cpu, last_t = cpu, now
            print(
                f"  t={now - start:5.0f}s master cpu {samples[-1][1]:.2f} cores, rss {samples[-1][2]:.0f} MiB, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if not burns and now - start >= burn_after:
                # From the measured fleet only (the node-loss groups have no worker to ask).
                targets = [mapping[n][1] for n in fleet_nodes[: args.burns * 7 : 7]]
                for iid in targets:
                    group = next(g for g in workers if any(iid in mapping[n] for n in g.nodes))
                    ev = await group.ask({"cmd": "burn", "instance_id": iid}, "burn")
                    burns[iid] = ev["breach_at"]
                    await asyncio.sleep(0.37)
        console.measuring = False
        steady: list[Window] = [(steady_from, time.time())]
        cpu_steady = sum(proc.cpu_times()[:2]) - cpu_before
        sent_steady = await messages_sent(groups) - sent_before
        await asyncio.sleep(5)  # the last alerts
        print(f"fan-out: {args.fanout_rounds} rounds (master pid {master.pid})", flush=True)
        result.update(await fanout(api, console, workers, fan_system, args.fanout_rounds))
        fan_windows: list[Window] = result.pop("fanout_windows")
        result.update(loop_lag(api, "steady", steady))
        result.update(loop_lag(api, "fanout", fan_windows))

        cpu_cores = [c for _, c, _ in samples]
        rss = [r for _, _, r in samples]
        result["master_cpu_cores_avg"] = round(statistics.mean(cpu_cores), 3)
        result["master_cpu_cores_max"] = round(max(cpu_cores), 3)
        # The agent channel's cost against the limit for its encoding (the same message bytes).
        sample = fleet.SimAgent("", "", "", "", instances=next(iter(mapping.values())))
        limit = decode_limit(sample.metrics_text(time.time()))
        per_message = cpu_steady / max(sent_steady, 1) * 1e6
        result["master_cpu_us_per_metrics_message"] = round(per_message, 1)
        result["json_loads_us_per_metrics_message"] = round(limit["json_loads"], 1)
        result["msgspec_decode_us_per_metrics_message"] = round(limit["msgspec_decode"], 1)
        result["master_over_json_loads"] = round(per_message / limit["json_loads"], 1)
        print(
            f"agent channel: {per_message:.0f} µs of master CPU per metrics message "
            f"({sent_steady} messages, all the master did in the steady window); the limit, "
            f"json.loads of the same bytes: {limit['json_loads']:.1f} µs "
            f"(msgspec decode, as the master: {limit['msgspec_decode']:.1f} µs); "
            f"ratio {per_message / limit['json_loads']:.1f}",
            flush=True,
        )
        result["master_rss_mib_first"] = round(rss[0], 1)
        result["master_rss_mib_last"] = round(rss[-1], 1)
        result["master_rss_mib_max"] = round(max(rss), 1)
        lat = [x * 1000 for x in console.latencies]
        result["ingest_to_event_ms_p50"] = round(pct(lat, 50), 1)
        result["ingest_to_event_ms_p99"] = round(pct(lat, 99), 1)
        result["ingest_to_event_events"] = len(lat)
        alert_lat = [console.alerts[i][0] - b for i, b in burns.items() if i in console.alerts]
        # The same, split: the master's evaluation (its started_at) and the event's delivery.
        fired = [
            parse_iso(console.alerts[i][1]["started_at"]) - b
            for i, b in burns.items()
            if i in console.alerts
        ]
        result["alert_fired_after_breach_s_p50"] = round(pct(fired, 50), 2)
        result["alert_fired_after_breach_s_p99"] = round(pct(fired, 99), 2)
        result["alert_rule"] = "cpu_percent > 50 for 3s"
        result["alert_latency_s_p50"] = round(pct(alert_lat, 50), 2)
        result["alert_latency_s_p99"] = round(pct(alert_lat, 99), 2)
        result["alert_latency_s_max"] = round(max(alert_lat, default=float("nan")), 2)
        result["alerts_seen"] = f"{len(alert_lat)}/{len(burns)}"

        # Nothing dropped: stop metrics everywhere, then compare what was sent and stored.
        for g in groups:
            await g.ask({"cmd": "pause"}, "paused")
        await asyncio.sleep(3)
        stats = [await g.ask({"cmd": "stats"}, "stats") for g in groups]
        stored = scrape(url, token)
        sent_msgs = sum(s["metrics_messages"] for s in stats)
        sent_rows = sum(s["rows"] for s in stats)
        result["metrics_messages_sent"] = sent_msgs
        result["metrics_messages_stored"] = int(stored["gdos_master_metrics_messages_total"])
        result["samples_sent"] = sent_msgs + sent_rows  # one node row per message + process rows
        result["samples_stored"] = int(stored["gdos_master_metrics_samples_total"])
        result["samples_rejected"] = int(stored["gdos_master_metrics_rejected_samples_total"])
        result["series_in_memory"] = int(stored["gdos_master_metrics_series"])
        result["metrics_buffer_mib"] = round(stored["gdos_master_metrics_buffer_bytes"] / 2**20, 1)
        result["master_loop_lag_s_last_10s"] = stored["gdos_master_event_loop_lag_seconds"]
        result["false_offline_during_run"] = _count_offline(data / "master.log")

        if not args.crash:  # a quick fan-out look: no node loss, no master restart
            rows = api_probe.read(str(probe_file))
            result.update(probed(rows, "steady", steady))
            result.update(probed(rows, "fanout", fan_windows))
            console_task.cancel()
            result["load_at_end"] = os.getloadavg()[0]
            return result

        # Node loss.
        console.offline_at.clear()
        t_kill = time.time()
        os.kill(kill_group.popen.pid, signal.SIGKILL)
        t_freeze = time.time()
        os.kill(freeze_group.popen.pid, signal.SIGSTOP)
        deadline = time.time() + 30
        while time.time() < deadline and not all(
            n in console.offline_at for n in kill_group.nodes + freeze_group.nodes
        ):
            await asyncio.sleep(0.05)
        killed = [
            console.offline_at[n] - t_kill for n in kill_group.nodes if n in console.offline_at
        ]
        frozen = [
            console.offline_at[n] - t_freeze for n in freeze_group.nodes if n in console.offline_at
        ]
        result["node_loss_killed_s_max"] = round(max(killed, default=float("nan")), 2)
        result["node_loss_killed_seen"] = f"{len(killed)}/10"
        result["node_loss_frozen_s_max"] = round(max(frozen, default=float("nan")), 2)
        result["node_loss_frozen_s_min"] = round(min(frozen, default=float("nan")), 2)
        result["node_loss_frozen_seen"] = f"{len(frozen)}/10"
        os.kill(freeze_group.popen.pid, signal.SIGCONT)

        # Master crash and restart: kill -9, start again on the same data, every agent of the
        # fleet reconnects (1-2 s jittered) and says `hello`; the master reconciles each.
        await asyncio.sleep(3)
        os.kill(master.pid, signal.SIGKILL)
        master.wait()
        t_restart = time.time()
        master = launch_master()
        print(f"master restarted (pid {master.pid})", flush=True)
        await healthy()
        t_healthy = time.time()
        # Polled (every 0.5 s) rather than read from the console's stream, which reconnects
        # too and would miss the agents that were quicker than it.
        online_at: dict[str, float] = {}
        deadline = time.time() + 120
        while time.time() < deadline and not all(n in online_at for n in fleet_nodes):
            with contextlib.suppress(httpx.HTTPError):  # the old master's keep-alive socket
                nodes = (await asyncio.to_thread(api.get, "/nodes")).json()
                now = time.time()
                for node in nodes:
                    if node["status"] == "online":
                        online_at.setdefault(node["id"], now)
            await asyncio.sleep(0.5)
        back = [online_at[n] - t_restart for n in fleet_nodes if n in online_at]
        storm: list[Window] = [(t_restart, max(online_at.values(), default=time.time()) + 1)]
        await asyncio.sleep(max(0.0, storm[0][1] - time.time()))
        result.update(await asyncio.to_thread(loop_lag, api, "storm", storm))
        rows = api_probe.read(str(probe_file))
        result.update(probed(rows, "steady", steady))
        result.update(probed(rows, "fanout", fan_windows))
        # From the restarted master's first answer: before it, nothing listens.
        result.update(probed(rows, "storm", [(t_healthy, storm[0][1])]))
        result["restart_master_healthy_s"] = round(t_healthy - t_restart, 2)
        result["restart_all_online_s"] = round(max(back, default=float("nan")), 2)
        result["restart_online_seen"] = f"{len(back)}/{len(fleet_nodes)}"
        result["restart_timeline_s"] = await asyncio.to_thread(start_up, api, t_restart)
        after = await asyncio.to_thread(scrape, url, token)
        result["restart_loop_lag_s_last_10s"] = after["gdos_master_event_loop_lag_seconds"]
        result["console_events"] = console.events
        result["console_reconnects"] = console.reconnects
        console_task.cancel()
        workers_cpu = 0.0
        for g in workers:
            with contextlib.suppress(psutil.Error):
                workers_cpu += sum(psutil.Process(g.popen.pid).cpu_times()[:2])
        result["simulator_cpu_seconds"] = round(workers_cpu, 1)
        result["load_at_end"] = os.getloadavg()[0]
        return result
    finally:
        stop_all(probe, groups or workers, master)
        master_log.close()


def stop_all(
    probe: "subprocess.Popen[bytes] | None", groups: list[Worker], master: "subprocess.Popen[bytes]"
) -> None:
    """End a run: the API probe, the simulator's workers (woken first: one may be stopped) and
    the master."""
    if probe is not None:
        probe.terminate()
        probe.wait(10)
    for g in groups:
        with contextlib.suppress(Exception):
            os.kill(g.popen.pid, signal.SIGCONT)
            g.popen.kill()
            g.popen.wait(10)
    master.terminate()
    try:
        master.wait(20)
    except subprocess.TimeoutExpired:
        master.kill()


def main() -> None:
    compile_sources()
    p = argparse.ArgumentParser(description="GDOS fleet benchmark (issue 4)")
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--processes", type=int, default=20)
    p.add_argument("--duration", type=float, default=120, help="measured seconds (after warm-up)")
    p.add_argument("--warmup", type=float, default=20)
    p.add_argument("--workers", type=int, default=4, help="simulator processes")
    p.add_argument("--watch", type=int, default=100, help="instances the console subscribes to")
    p.add_argument("--burns", type=int, default=20, help="processes that breach the alert rule")
    p.add_argument("--fanout-rounds", type=int, default=3, help="system start+stop over the fleet")
    p.add_argument(
        "--no-crash",
        dest="crash",
        action="store_false",
        help="skip node loss and the master's kill -9 and restart (a quick fan-out look)",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--profile", default=None, help="run the master under cProfile, write here")
    p.add_argument("--master-root", default=None, help="run the master from this source tree")
    p.add_argument(
        "--master-nice",
        type=int,
        default=0,
        help="niceness of the master and the API probe (e.g. -10 as root on a shared machine)",
    )
    args = p.parse_args()
    if args.fanout_rounds < 1:
        p.error("--fanout-rounds must be at least 1: the fan-out's figures need a round")
    if args.master_root:
        compile_sources(Path(args.master_root))
    print(
        f"fleet bench: {args.agents} agents x {args.processes} processes, {args.duration:.0f} s; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    result = asyncio.run(bench(args))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
