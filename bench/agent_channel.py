"""The agent channel's cost per metrics message, against `json.loads` of the same bytes.

    .venv/bin/python -m bench.agent_channel                         # this tree
    .venv/bin/python -m bench.agent_channel --base /tmp/me-base     # and another, interleaved

Each round starts a real master (a subprocess, its own data dir), enrolls `--agents` simulated
agents (bench/fleet.py) whose instances are written into its database, connects them over
real WebSockets, and has each send `--messages` metrics messages (one row per process, distinct
seconds) at `--rate` a second from a random phase, so that each frame is a socket read and a
wake-up of its own as in a fleet (0: as fast as the master reads), with an alert rule over the
whole fleet and a console subscribed to 100 instances' metrics. The figure is the master's CPU seconds (user +
system, from /proc: robust to a loaded machine) over those messages, less its idle CPU over
the same wall time, per message. With `--base`, rounds alternate between the two trees.

Beside it, in this process: `json.loads` of one message (the limit for this encoding) and the
master's message handler alone (`master.api.agent_inbox`: decode, store, alerts, load), so the
figure splits into the handler and the transport (uvicorn, websockets, the event loop).
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import types
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect

from bench import compile_sources, fleet
from bench.fleet_bench import (
    ADMIN_PASSWORD,
    HOT_RULE,
    free_port,
    master_args,
    seed_instances,
)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class MasterUnderTest:
    """A master from `root` on a free loopback port, with `agents` enrolled and seeded."""

    def __init__(self, root: Path, data: Path, agents: int, processes: int) -> None:
        self.root, self.data = root, data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data / "master.log", "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(
            [
                PY,
                *master_args(
                    self.port,
                    data / "master",
                    "--heartbeat-grace",  # agents connecting one by one are silent meanwhile
                    "60",
                ),
            ],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.proc = psutil.Process(self.popen.pid)
        self.agents_wanted, self.processes = agents, processes
        self.token = ""
        self.agents: list[fleet.SimAgent] = []

    async def setup(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            r = await client.post(
                self.url + "/api/v1/auth/login",
                json={"username": "admin", "password": ADMIN_PASSWORD},
            )
            self.token = r.json()["token"]
            join = (self.data / "master" / "join-token").read_text().strip()
            sem = asyncio.Semaphore(8)

            async def one(n: int) -> tuple[str, str, str]:
                async with sem:
                    node, secret = await fleet.enroll(client, self.url, join, f"sim-{n:05d}")
                return node, secret, f"sim-{n:05d}"

            creds = await asyncio.gather(*(one(n) for n in range(self.agents_wanted)))
            _, mapping = seed_instances(
                self.data / "master" / "ops_data.db", [c[0] for c in creds], self.processes
            )
            r = await client.post(
                self.url + "/api/v1/alert-rules",
                headers={"Authorization": f"Bearer {self.token}"},
                json=HOT_RULE,
            )
            r.raise_for_status()
        self.agents = [
            fleet.SimAgent(self.url, node, secret, host, instances=mapping[node])
            for node, secret, host in creds
        ]

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
        self.log.close()


async def _connect(agent: fleet.SimAgent) -> ClientConnection:
    ws = await connect(
        fleet.ws_url(agent.master),
        additional_headers={"Authorization": f"Bearer {agent.secret}"},
        max_size=8 << 20,
        proxy=None,
        compression=None,
    )
    await ws.send(agent.hello_text())
    while json.loads(await ws.recv()).get("type") != "config":
        pass
    return ws


async def _console(url: str, token: str, keys: list[str]) -> ClientConnection:
    ws = await connect(
        url.replace("http://", "ws://") + "/api/v1/events",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=16 << 20,
        proxy=None,
    )
    await ws.send(json.dumps({"batch": True}))
    await ws.send(json.dumps({"subscribe": keys}))
    return ws


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def measure(master: MasterUnderTest, messages: int, rate: float) -> dict[str, float]:
    """Master CPU µs per metrics message over real sockets, idle CPU subtracted."""
    await master.setup()
    # The master's idle CPU (timers, liveness) over a quiet second and a half, before agents.
    c0, t0 = cpu_seconds(master.proc), time.monotonic()
    await asyncio.sleep(1.5)
    idle_rate = (cpu_seconds(master.proc) - c0) / (time.monotonic() - t0)
    sockets = await asyncio.gather(*(_connect(a) for a in master.agents))
    watched = [f"metrics:{next(iter(a.instances))}" for a in master.agents[:100]]
    console = await _console(master.url, master.token, watched)
    readers = [asyncio.create_task(_drain(ws)) for ws in [*sockets, console]]
    # Every message a second of its own, ending now, so each sample lands in a new slot; the
    # first one (not measured) allocates the series, as a fleet's first seconds do.
    first = time.time() - messages
    texts = [[a.metrics_text(first + k) for k in range(-1, messages)] for a in master.agents]
    stored0 = await _scrape(master, "gdos_master_metrics_messages_total")
    await asyncio.gather(*(ws.send(b[0]) for ws, b in zip(sockets, texts, strict=True)))
    while await _scrape(master, "gdos_master_metrics_messages_total") < stored0 + len(texts):
        await asyncio.sleep(0.05)
    texts = [b[1:] for b in texts]

    async def blast(ws: ClientConnection, batch: list[str]) -> None:
        """`rate` frames a second, from a random phase: as a fleet's agents, each frame
        arrives on its own (one socket read, one wake-up of the socket's task), unless
        `rate` is 0: as fast as the master reads, so frames share reads."""
        if rate:
            await asyncio.sleep(random.random() / rate)
        began = time.monotonic()
        for k, text in enumerate(batch):
            if rate:
                await asyncio.sleep(max(0.0, began + k / rate - time.monotonic()))
            await ws.send(text)

    c0, t0 = cpu_seconds(master.proc), time.monotonic()
    stored0 = await _scrape(master, "gdos_master_metrics_messages_total")
    await asyncio.gather(*(blast(ws, b) for ws, b in zip(sockets, texts, strict=True)))
    total = len(master.agents) * messages
    while await _scrape(master, "gdos_master_metrics_messages_total") < stored0 + total:
        await asyncio.sleep(0.05)
    wall = time.monotonic() - t0
    used = cpu_seconds(master.proc) - c0 - idle_rate * wall
    for task in readers:
        task.cancel()
    for ws in [*sockets, console]:
        with contextlib.suppress(Exception):
            await ws.close()
    return {"us_per_message": used / total * 1e6, "wall_s": wall, "idle_cores": idle_rate}


async def _scrape(master: MasterUnderTest, name: str) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        text = (
            await client.get(
                master.url + "/metrics", headers={"Authorization": f"Bearer {master.token}"}
            )
        ).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    raise RuntimeError(f"{name} not on the master's /metrics page")


def limits(message: str, repeat: int = 5, number: int = 2000) -> dict[str, float]:
    """µs per message in this process: `json.loads`, best of `repeat` runs, in CPU time (a
    loaded machine's waits for a core are not the decoder's)."""
    timer = timeit.Timer(lambda: json.loads(message), timer=time.process_time)
    return {"json_loads": min(timer.repeat(repeat, number)) / number * 1e6}


async def handler_alone(agents: int, processes: int, messages: int, warm: int = 21) -> float:
    """CPU µs per message of the master's handler alone (no sockets), in this process, on a
    real `Services` (SQLite in a temporary directory) with the same fleet, rule and console
    keys: what the transport adds is the socket figure minus this one. The first `warm` turns
    are not measured: the series are created and each closes its first (partial) block, so the
    measured turns close blocks as a fleet's steady state does (whole ones, one per 20 s)."""
    from master.api.agent_inbox import Inbox
    from master.config import Settings
    from master.db import models
    from master.services import metrics as metrics_module
    from master.services.agents import AgentLink
    from master.services.directory import InstanceInfo
    from master.services.wiring import Services

    real_time = metrics_module.time  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory() as tmp:
        svc = Services(
            Settings(
                host="127.0.0.1",
                port=1,
                data_dir=Path(tmp),
                admin_password=ADMIN_PASSWORD,
                backup_interval=0,
            )
        )
        await svc.start()
        try:
            svc.alerts.set_rule(  # what `POST /alert-rules` leaves in the engine
                models.AlertRule(
                    id="hot",
                    name="hot",
                    metric="cpu_percent",
                    op=">",
                    threshold=50,
                    for_seconds=3.0,
                    scope_kind="global",
                    enabled=True,
                )
            )
            sims = []
            for n in range(agents):
                node = f"node{n:05d}"
                ids = [f"i{n:05d}-{j:02d}" for j in range(processes)]
                for iid in ids:
                    svc.directory._put(InstanceInfo(iid, node, "sys", iid, "running"))
                sims.append((AgentLink(node, _NoChannel()), fleet.SimAgent("", node, "", "", ids)))
            sub = svc.hub.subscribe()
            sub.keys.update(f"metrics:i{n:05d}-00" for n in range(min(agents, 100)))
            svc.hub.keys_changed()
            inboxes = [(Inbox(link, svc), sim) for link, sim in sims]
            # The store's clock a second per turn: turns slower than a second (a loaded machine)
            # would otherwise leave samples over MAX_SKEW behind, re-stamped by the master's clock.
            first = time.time()
            clock = [first]
            metrics_module.time = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
                time=lambda: clock[0], monotonic=time.monotonic
            )
            texts = [
                [(ib, sim.metrics_text(first + k)) for ib, sim in inboxes]
                for k in range(warm + messages)
            ]

            def feed(k: int) -> None:
                clock[0] = first + k + 0.25
                for inbox, text in texts[k]:
                    inbox.receive(text)
                while not sub.queue.empty():
                    sub.queue.get_nowait()

            for k in range(warm):
                feed(k)
            c0 = time.process_time()
            for k in range(warm, warm + messages):
                feed(k)
            used = time.process_time() - c0
        finally:
            metrics_module.time = real_time  # type: ignore[attr-defined]
            await svc.stop()
    return used / (agents * messages) * 1e6


class _NoChannel:
    async def send_text(self, data: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def one_round(root: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gdos-channel-") as tmp:
        master = MasterUnderTest(root, Path(tmp), args.agents, args.processes)
        try:
            return await measure(master, args.messages, args.rate)
        finally:
            master.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--processes", type=int, default=20)
    p.add_argument("--messages", type=int, default=25, help="per agent (distinct seconds)")
    p.add_argument(
        "--rate", type=float, default=10.0, help="frames a second per agent (0: flat out)"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--base", default=None, help="another source tree, measured interleaved")
    p.add_argument("--no-handler", action="store_true", help="skip the in-process handler")
    args = p.parse_args()
    trees = {"this": ROOT}
    if args.base:
        trees["base"] = Path(args.base).resolve()
    for root in trees.values():
        compile_sources(root)
    sim = fleet.SimAgent("", "", "", "", instances=[f"i{j:02d}" for j in range(args.processes)])
    limit = limits(sim.metrics_text(time.time()))["json_loads"]
    print(
        f"agent channel: {args.agents} agents x {args.processes} processes, "
        f"{args.messages} messages each at {args.rate:g}/s; json.loads {limit:.1f} µs; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, root in trees.items():
            got = asyncio.run(one_round(root, args))
            results[name].append(got["us_per_message"])
            print(
                f"  round {r + 1} {name}: {got['us_per_message']:.0f} µs/message "
                f"({got['us_per_message'] / limit:.1f} x json.loads; wall {got['wall_s']:.1f} s, "
                f"idle {got['idle_cores']:.3f} cores, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    out: dict[str, Any] = {"json_loads_us": round(limit, 1)}
    for name, values in results.items():
        out[f"{name}_us_per_message_median"] = round(statistics.median(values), 1)
        out[f"{name}_over_json_loads"] = round(statistics.median(values) / limit, 2)
    if not args.no_handler:
        alone = asyncio.run(handler_alone(args.agents, args.processes, args.messages))
        out["handler_alone_us"] = round(alone, 1)
        out["handler_over_json_loads"] = round(alone / limit, 2)
    out["load_at_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
