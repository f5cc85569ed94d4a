"""Several masters (issue 18): PostgreSQL 15 + an S3 server + 3 masters + the fleet simulator.

    .venv/bin/python -m bench.cluster                      # 1,000 agents x 20 processes
    .venv/bin/python -m bench.cluster --agents 200 --seconds 30   # a quick look

One machine, one run, all over real sockets and real processes:
1. a throwaway PostgreSQL cluster (tests/pg.py; as the `postgres` user when run as root), moto's
   S3 server, and `--masters` masters on them, started at the same instant;
2. N simulated agents x 20 processes at 1 Hz (bench/fleet.py), each given every master's URL
   (its list rotated, so the fleet is spread over the masters) and failing over as the agent
   (the rest of its list in the node's own order: a lost master's nodes spread over the others);
3. steady state: per-master CPU and RSS, PostgreSQL's CPU and connections; commands (start)
   sent through random masters: answer, and latency to the agent, for the master holding the
   node and for another one (a command routed between masters);
4. kill -9 of the first master while commands for its nodes go through random masters: kill ->
   all its nodes `online` on another master, on the survivors' event streams and in `GET
   /nodes`; each command lost (accepted, never executed), executed twice, or refused; every
   survivor's console checked for every moved node's transition;
5. SIGSTOP of the survivor holding the most nodes: the same failover time; then SIGCONT, and
   what the woken master changed (nodes offline, instances `unknown`: fencing says none);
6. after the failovers (the fleet on the one master that never failed): CPU and RSS again.

Prints a table (markdown, for RESULTS.md) and the figures as one JSON line.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy.engine import make_url

from bench import compile_sources
from bench.cross_master import stage_figures, stage_marks, stage_table
from bench.fleet import KEEPALIVE_ENV, agent_keepalive
from bench.fleet_bench import (
    ADMIN_PASSWORD,
    PY,
    ROOT,
    Console,
    Worker,
    free_port,
    master_args,
    measured_setup,
    pct,
    seed_instances,
)
from bench.master_memory import HOOK, smaps_rollup
from tests.pg import Cluster, find_bindir, missing_reason

S3_KEYS = ("cluster-ak", "cluster-sk")
BUCKET = "gdos-cluster"


@dataclass
class MasterProc:
    """One master process on the shared database and bucket."""

    name: str
    port: int
    data: Path
    popen: subprocess.Popen[bytes]
    id: str = ""
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, timeout: float = 30) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def log_errors(self, root: Path) -> int:
        """ERROR lines in its log (a stalled pool, an exception in a callback)."""
        text = (root / f"{self.name}.log").read_text(errors="replace")
        return sum(" ERROR " in line for line in text.splitlines())


# With --stages, a master's routed commands log each step's time (master/services/
# remote_commands.py at debug), and each agent socket its greeting's (master/api/agent.py);
# the rest of the master at its usual level.
STAGED = (
    "import logging, runpy; "
    "logging.getLogger('master.services.remote_commands').setLevel(logging.DEBUG); "
    "logging.getLogger('master.api.agent').setLevel(logging.DEBUG); "
    "logging.getLogger('master.services.hellos').setLevel(logging.DEBUG); "
    "runpy.run_module('master', run_name='__main__', alter_sys=True)"
)


def launch_master(
    name: str,
    root: Path,
    db_url: str,
    s3: str,
    nice: int,
    code: Path = ROOT,
    stages: bool = False,
) -> MasterProc:
    """One master from the source tree `code` (another checkout: before/after runs)."""
    port = free_port()
    data = root / name
    data.mkdir(parents=True)
    url = f"http://127.0.0.1:{port}"
    store = ["--store-type", "minio", "--minio-endpoint", s3, "--minio-bucket", BUCKET]
    store += ["--minio-ak", S3_KEYS[0], "--minio-sk", S3_KEYS[1]]
    argv = master_args(
        port, data, "--db-url", db_url, "--advertise-url", url, "--debug-endpoints", *store
    )
    if stages:
        argv[:2] = ["-c", STAGED]
    with open(root / f"{name}.log", "ab") as log:
        popen = subprocess.Popen(
            [PY, *argv],
            cwd=code,
            # The heap hook (bench/master_memory.py's): SIGUSR1 writes the master's heap figures.
            env={
                **os.environ,
                "PYTHONPATH": f"{code}{os.pathsep}{HOOK}",
                "GDOS_BENCH_HEAP_REPORT": str(data / "heap.json"),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=measured_setup(nice),
        )
    return MasterProc(name, port, data, popen)


async def heap_figures(master: MasterProc) -> dict[str, Any]:
    """What a master's RSS is made of (smaps_rollup; glibc's arenas in use and free; the
    collector's objects by type), read through the heap hook's SIGUSR1 report."""
    report = master.data / "heap.json"
    out: dict[str, Any] = {"smaps_mib": smaps_rollup(master.popen.pid)}
    os.kill(master.popen.pid, signal.SIGUSR1)
    for _ in range(240):
        if report.exists():
            heap = json.loads(report.read_text())
            out["mallinfo2_mib"] = {
                k: round(v / 2**20, 1) for k, v in heap["mallinfo2"].items() if v > 2**20
            }
            out["gc_objects"] = heap["gc_objects"]
            out["gc_types"] = heap["gc_types"][:12]
            break
        await asyncio.sleep(0.5)
    return out


async def wait_healthy(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


class Stream(Console):
    """A console on one master's event stream (`--watch`, its own process): each node's
    `online` as one JSON line [wall time, node id, master id] on stdout, and the stream's ends
    (a 1013 "reader too slow" among them) as {"ended": why}."""

    def _seen(self, now: float, msg: dict[str, Any]) -> None:
        super()._seen(now, msg)
        data = msg["data"]
        if msg["topic"] == "node" and data.get("status") == "online" and data.get("master_id"):
            print(json.dumps([now, data["id"], data["master_id"]]), flush=True)

    async def run(self) -> None:
        while True:
            try:
                await self._run()
            except Exception as exc:
                print(json.dumps({"ended": repr(exc)}), flush=True)
                await asyncio.sleep(0.5)

    async def _run(self) -> None:
        self.ready = asyncio.Event()
        waiting = asyncio.create_task(self.ready.wait())
        waiting.add_done_callback(lambda _: print(json.dumps({"ready": True}), flush=True))
        await super()._run()


class Watcher:
    """A console on one master's event stream, read in a process of its own (a console is one:
    the bench's loop, busy with polls and commands, must not be what falls behind): when each
    node came online on it, and where."""

    def __init__(self, master: MasterProc, root: Path) -> None:
        self.name = master.name
        self.url, self.token = master.url, master.token
        self.out = root / f"stream-{master.name}.jsonl"
        self.online: dict[str, list[tuple[float, str]]] = {}
        self.ready = asyncio.Event()
        self.ends: list[str] = []
        self._read = 0

    async def run(self) -> None:
        """The reading process, until cancelled (then it is killed)."""
        with open(self.out, "wb") as out:
            popen = subprocess.Popen(
                [PY, "-m", "bench.cluster", "--watch", self.url, "--token", self.token],
                cwd=ROOT,
                stdout=out,
            )
        try:
            while popen.poll() is None:
                self.refresh()
                await asyncio.sleep(0.1)
        finally:
            popen.kill()
            popen.wait()

    def refresh(self) -> None:
        """Take in what the reading process wrote since the last call (whole lines)."""
        with open(self.out, "rb") as f:
            f.seek(self._read)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read += len(complete)
        for line in complete.splitlines():
            item = json.loads(line)
            if isinstance(item, dict):
                if item.get("ready"):
                    self.ready.set()
                elif "ended" in item:
                    self.ends.append(item["ended"])
                continue
            now, node, master = item
            self.online.setdefault(node, []).append((now, master))

    def moved(self, node: str, since: float, away_from: str) -> float | None:
        """When this stream showed the node online on another master than `away_from`."""
        return next(
            (t for t, m in self.online.get(node, []) if t >= since and m != away_from), None
        )


class Usage:
    """CPU (cores) and RSS of a set of processes, sampled: a master, or PostgreSQL's tree."""

    def __init__(self, pid: int, tree: bool = False) -> None:
        self.root = psutil.Process(pid)
        self.tree = tree
        self.last = (time.monotonic(), self.cpu())
        self.samples: list[tuple[float, float]] = []  # (cores, RSS MiB)

    def procs(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)] if self.tree else [self.root]

    def cpu(self) -> float:
        total = 0.0
        for proc in self.procs():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        # Backends that ended: their CPU is the postmaster's children's.
        times = self.root.cpu_times()
        return total + (times.children_user + times.children_system if self.tree else 0.0)

    def rss(self) -> float:
        """RSS; for a tree, the sum of PSS (its shared memory counted once, not per process)."""
        total = 0
        for proc in self.procs():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_full_info().pss if self.tree else proc.memory_info().rss
        return total / 2**20

    def sample(self) -> tuple[float, float]:
        now, cpu = time.monotonic(), self.cpu()
        cores = (cpu - self.last[1]) / max(now - self.last[0], 1e-3)
        self.last = (now, cpu)
        self.samples.append((cores, self.rss()))
        return self.samples[-1]

    def restart(self) -> None:
        """Forget the samples; the next one covers from now."""
        self.samples.clear()
        self.last = (time.monotonic(), self.cpu())

    def figures(self) -> dict[str, float]:
        cores = [c for c, _ in self.samples] or [float("nan")]
        rss = [r for _, r in self.samples] or [float("nan")]
        return {
            "cpu_cores_avg": round(statistics.mean(cores), 3),
            "cpu_cores_max": round(max(cores), 3),
            "rss_mib_last": round(rss[-1], 1),
            "rss_mib_max": round(max(rss), 1),
        }


def _pg(db_url: str) -> Any:
    import psycopg

    return psycopg.connect(
        db_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )


def pg_connections(db_url: str) -> int:
    """Connections to the masters' database now (pg_stat_activity, this query's own left out)."""
    with _pg(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def pg_server(db_url: str) -> tuple[str, int]:
    """The server's version and its postmaster's pid (a backend's parent; the server is local)."""
    with _pg(db_url) as conn:
        row = conn.execute("SELECT current_setting('server_version'), pg_backend_pid()").fetchone()
        assert row is not None
        # Read while the connection is open: its backend exits with it.
        return str(row[0]), psutil.Process(int(row[1])).ppid()


def connections_to(pid: int, port: int) -> int:
    """The process's TCP connections to `port` (a master's PostgreSQL pool, open now)."""
    with contextlib.suppress(psutil.Error):
        conns = psutil.Process(pid).net_connections(kind="tcp")
        return sum(1 for c in conns if c.raddr and c.raddr.port == port)
    return 0


_ACTIVITY = (
    "SELECT pid, client_port, state, wait_event_type, wait_event, "
    "extract(epoch from now() - xact_start), pg_blocking_pids(pid), left(query, 60) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def sample_activity(
    db_url: str, masters: list[MasterProc], since: float, stop: threading.Event, out: Path
) -> dict[str, Any]:
    """pg_stat_activity every 0.2 s until `stop` (a thread): each session named by its
    master (client port), its state, lock waits and blockers; the raw samples go to `out`.
    Returns, per master, the seconds (since `since`) it had sessions idle in a transaction
    and sessions waiting on a lock, and whose sessions blocked them."""
    port_of: dict[int, str] = {}
    for m in masters:
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(m.popen.pid).net_connections(kind="tcp"):
                if c.laddr:
                    port_of[c.laddr.port] = m.name
    idle: dict[str, list[float]] = {}
    waiting: dict[str, list[float]] = {}
    blockers: dict[str, set[str]] = {}
    with _pg(db_url) as conn, open(out, "a") as raw:
        while not stop.wait(0.2):
            t = round(time.time() - since, 2)
            rows = conn.execute(_ACTIVITY).fetchall()
            by_pid = {r[0]: port_of.get(r[1] or 0, "?") for r in rows}
            sample = []
            for pid, port, state, wtype, wevent, age, blocked_by, query in rows:
                name = port_of.get(port or 0, "?")
                if state == "idle in transaction":
                    idle.setdefault(name, []).append(t)
                if wtype == "Lock":
                    waiting.setdefault(name, []).append(t)
                    blockers.setdefault(name, set()).update(by_pid.get(b, "?") for b in blocked_by)
                if state != "idle":
                    sample.append([name, pid, state, wevent, age, blocked_by, query])
            raw.write(json.dumps({"t": t, "sessions": sample}, default=str) + "\n")
    span = {k: [min(v), max(v)] for k, v in idle.items()}
    return {
        "idle_in_transaction_s": span,
        "lock_wait_s": {k: [min(v), max(v)] for k, v in waiting.items()},
        "blocked_by": {k: sorted(v) for k, v in blockers.items()},
    }


def timeline_figures(
    lines: dict[str, list[list[Any]]],
    watchers: list["Watcher"],
    moving: list[str],
    lost: MasterProc,
    since: float,
) -> dict[str, Any]:
    """Per moved node, seconds after `since`: the agent's link lost, its last dial (the one to
    the survivor that took it) begun, its hello sent to that survivor, its `online` seen on a
    survivor's stream; p50 / p90 / max of each."""
    dropped: list[float] = []
    dialled: list[float] = []
    greeted: list[float] = []
    online: list[float] = []
    for node in moving:
        events = [(t, what, url) for t, what, url in lines.get(node, []) if t >= since]
        t_lost = next((t for t, what, _ in events if what == "lost"), None)
        t_hello = next((t for t, what, url in events if what == "hello" and url != lost.url), None)
        t_dial = next(
            (t for t, what, url in reversed(events) if what == "dial" and t <= (t_hello or 0)),
            None,
        )
        t_online = min(
            (t for w in watchers if (t := w.moved(node, since, lost.id)) is not None),
            default=None,
        )
        pairs = ((dropped, t_lost), (dialled, t_dial), (greeted, t_hello), (online, t_online))
        for into, t in pairs:
            if t is not None:
                into.append(t - since)

    def spread(xs: list[float]) -> list[float]:
        return [round(pct(xs, q), 2) for q in (50, 90, 100)] if xs else []

    return {
        "link_lost_s": spread(dropped),
        "last_dial_s": spread(dialled),
        "hello_sent_s": spread(greeted),
        "online_seen_s": spread(online),
        "nodes_timed": [len(dropped), len(dialled), len(greeted), len(online)],
    }


async def loop_lags(
    masters: list[MasterProc], since: float, until: float, keep: Path | None = None
) -> dict[str, Any]:
    """Per master, its event loop's lateness between `since` and `until` (wall times), ms:
    p99 / max. The longest a healthy master left a ping unanswered: what a pong deadline must
    cover. `keep`: the samples themselves (with the CPU the master used over each: a stall
    with little CPU behind it was waiting for a core) go to that file."""
    out: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    for m in masters:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            async with m.api(10) as api:
                body = (await api.get("/debug/loop-lag", params={"since": since})).json()
            samples[m.name] = [s for s in body["samples"] if s[0] <= until]
            lags = [lag * 1000 for t, lag, _ in samples[m.name]]
            out[m.name] = [round(pct(lags, 99), 1), round(max(lags, default=0.0), 1)]
    if keep is not None:
        keep.write_text(json.dumps({"since": since, "samples": samples}))
    return out


def collateral(lines: dict[str, list[list[Any]]], moving: list[str], since: float) -> int:
    """Nodes that were not moving but lost their link after `since` anyway (a survivor slow
    to answer a ping while it takes the moving nodes over)."""
    kept = set(lines) - set(moving)
    return sum(any(what == "lost" and t >= since for t, what, _ in lines[n]) for n in kept)


@dataclass
class Sent:
    """One command sent through the API: where, for which node, and how it was answered."""

    instance_id: str
    node_id: str
    master: str  # the master asked (its name)
    holder: str  # the master holding the node when sent, as last seen (name; "" unknown)
    at: float
    status: int = 0  # HTTP status; 0: no answer (connection refused or reset)
    code: str = ""  # the API error's code
    answered_after: float = 0.0


@dataclass
class Pool:
    """Stopped instances, one per command, never reused: a second start of one is a double."""

    by_node: dict[str, list[str]]
    used: set[str] = field(default_factory=set)

    def take(self, nodes: list[str]) -> tuple[str, str] | None:
        for node in random.sample(nodes, len(nodes)):
            free = [i for i in self.by_node.get(node, []) if i not in self.used]
            if free:
                self.used.add(free[0])
                return node, free[0]
        return None


async def send_commands(
    masters: list[MasterProc],
    pool: Pool,
    nodes: list[str],
    holders: dict[str, str],
    rate: float,
    seconds: float,
) -> list[Sent]:
    """`start` of pool instances on `nodes` through random masters, `rate` a second, each
    without waiting for the one before."""
    clients = {m.name: m.api() for m in masters}
    sent: list[Sent] = []

    async def one(cmd: Sent) -> None:
        try:
            reply = await clients[cmd.master].post(f"/instances/{cmd.instance_id}/start")
            cmd.status = reply.status_code
            if reply.status_code >= 400:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    cmd.code = reply.json()["error"]["code"]
        except httpx.HTTPError as exc:
            cmd.code = type(exc).__name__
        cmd.answered_after = time.time() - cmd.at

    tasks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        picked = pool.take(nodes)
        if picked is None:
            break
        node, iid = picked
        master = random.choice(masters)
        cmd = Sent(iid, node, master.name, holders.get(node, ""), time.time())
        sent.append(cmd)
        tasks.append(asyncio.create_task(one(cmd)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    for client in clients.values():
        await client.aclose()
    return sent


@dataclass(frozen=True)
class Run:
    """One start an agent received: when, its command id, the master URL it came through."""

    at: float
    command_id: str
    via: str


async def executed(workers: list[Worker]) -> dict[str, list[Run]]:
    """Instance id -> each start of it the agent received since the last ask, in order."""
    out: dict[str, list[Run]] = {}
    for w in workers:
        for _node, cid, kind, iid, at, via in (await w.ask({"cmd": "executed"}, "executed"))[
            "commands"
        ]:
            if kind == "start":
                out.setdefault(iid, []).append(Run(at, cid, via))
    for each in out.values():
        each.sort(key=lambda run: run.at)
    return out


def doubles(
    sent: list[Sent], runs: dict[str, list[Run]], masters: list[MasterProc]
) -> list[dict[str, Any]]:
    """Each instance started more than once: the API call, and every start the agent got (its
    command id, the master it came through, seconds after the call)."""
    name = {m.url: m.name for m in masters}
    return [
        {
            "instance": c.instance_id,
            "node": c.node_id,
            "asked": c.master,
            "holder": c.holder,
            "status": c.status or c.code,
            "starts": [
                [r.command_id, name.get(r.via, r.via), round(r.at - c.at, 3)]
                for r in runs[c.instance_id]
            ],
        }
        for c in sent
        if len(runs.get(c.instance_id, [])) > 1
    ]


def tally(
    sent: list[Sent], runs: dict[str, list[Run]], prefix: str, masters: list[MasterProc]
) -> dict[str, Any]:
    """What became of each command: accepted and executed once, lost, executed twice (each
    named), refused."""
    accepted = [c for c in sent if 200 <= c.status < 300]
    refused = [c for c in sent if not 200 <= c.status < 300]
    codes: dict[str, int] = {}
    for c in refused:
        key = f"{c.status} {c.code}" if c.status else f"no answer ({c.code})"
        codes[key] = codes.get(key, 0) + 1
    return {
        f"{prefix}_sent": len(sent),
        f"{prefix}_accepted": len(accepted),
        f"{prefix}_executed_once": sum(len(runs.get(c.instance_id, [])) == 1 for c in accepted),
        f"{prefix}_lost": sum(not runs.get(c.instance_id) for c in accepted),
        f"{prefix}_executed_twice": sum(len(runs.get(c.instance_id, [])) > 1 for c in sent),
        f"{prefix}_twice": doubles(sent, runs, masters),
        f"{prefix}_refused": codes,
        f"{prefix}_refused_but_executed": sum(bool(runs.get(c.instance_id)) for c in refused),
        f"{prefix}_not_routed": sum(
            c.status == 409 and c.holder not in ("", c.master) for c in refused
        ),
    }


def accepted_lost(sent: list[Sent], runs: dict[str, list[Run]]) -> list[Sent]:
    return [c for c in sent if 200 <= c.status < 300 and not runs.get(c.instance_id)]


async def lost_detail(master: MasterProc, lost: list[Sent]) -> list[dict[str, Any]]:
    """Each accepted command no agent received: where it was sent, and its instance now."""
    out = []
    async with master.api() as api:
        for c in lost:
            inst = (await api.get(f"/instances/{c.instance_id}")).json()
            out.append(
                {
                    "instance": c.instance_id,
                    "node": c.node_id,
                    "asked": c.master,
                    "holder": c.holder,
                    "at": c.at,
                    "now": {k: inst.get(k) for k in ("state", "desired_state", "last_error")},
                }
            )
    return out


def latencies(sent: list[Sent], runs: dict[str, list[Run]], cross: bool) -> list[float]:
    """ms from the API call to the agent receiving it, for accepted commands sent to the
    master holding the node (cross False) or to another one (cross True)."""
    return [
        (runs[c.instance_id][0].at - c.at) * 1000
        for c in sent
        if 200 <= c.status < 300
        and c.instance_id in runs
        and c.holder
        and (c.holder != c.master) == cross
    ]


async def holders(
    masters: list[MasterProc], names: dict[str, str], timeout: float = 30
) -> dict[str, str]:
    """Node id -> the name of the master holding it ("" offline), as the first of `masters`
    to answer lists them (the database is shared: any master's listing will do)."""
    for master in masters:
        with contextlib.suppress(httpx.HTTPError):
            async with master.api(timeout) as api:
                nodes = (await api.get("/nodes")).json()
            return {n["id"]: names.get(n["master_id"] or "", "") for n in nodes}
    raise RuntimeError(f"no master answers GET /nodes within {timeout:.0f} s")


async def failover(
    polled_on: list[MasterProc],
    watchers: list[Watcher],
    names: dict[str, str],
    moving: list[str],
    lost: MasterProc,
    since: float,
    timeout: float,
) -> dict[str, Any]:
    """Until every node of `moving` is online on another master than `lost` in `GET /nodes`
    (of any master of `polled_on` that answers): the time of the last one there and on the
    watchers' event streams."""
    polled: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(polled) < len(moving):
        with contextlib.suppress(RuntimeError):
            now_held = await holders(polled_on, names, timeout=2)
            now = time.time()
            for node in moving:
                if now_held.get(node) not in ("", lost.name, None):
                    polled.setdefault(node, now)
        await asyncio.sleep(0.25)
    deadline = time.monotonic() + 2.0  # the events of the last ones, on their way
    for w in watchers:
        w.refresh()
    while time.monotonic() < deadline and not all(
        any(w.moved(n, since, lost.id) is not None for w in watchers) for n in moving
    ):
        await asyncio.sleep(0.1)
    firsts = [
        min((t for w in watchers if (t := w.moved(n, since, lost.id)) is not None), default=None)
        for n in moving
    ]
    seen = [t - since for t in firsts if t is not None]
    out: dict[str, Any] = {
        "nodes": len(moving),
        "api_s": round(max(polled.values()) - since, 2) if polled else float("nan"),
        "api_seen": len(polled),
        "events_s": round(max(seen), 2) if seen else float("nan"),
        "events_seen": len(seen),
        "missed_per_console": {
            w.name: sum(w.moved(n, since, lost.id) is None for n in moving) for w in watchers
        },
    }
    if len(polled) == len(moving) and len(seen) < len(moving):
        out["events_s"] = float("nan")  # not every node's event arrived: no failover time
    return out


@contextlib.contextmanager
def postgres(db_url: str | None) -> Iterator[str]:
    """`db_url` (an empty database on a local server), else a database on a throwaway cluster."""
    if db_url:
        yield db_url
        return
    reason = missing_reason()
    bindir = find_bindir()
    if reason is not None or bindir is None:
        raise SystemExit(f"bench.cluster: {reason}")
    cluster = Cluster(bindir).start()
    try:
        yield cluster.create_database()
    finally:
        cluster.stop()


@contextlib.contextmanager
def s3_server(root: Path) -> Iterator[str]:
    port = free_port()
    with open(root / "moto.log", "ab") as log:
        popen = subprocess.Popen(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        popen.kill()
        popen.wait()


def sample_all(usage: dict[str, Usage], line: str) -> None:
    parts = [
        f"{name} {cores:.2f}c/{rss:.0f}M"
        for name, (cores, rss) in ((n, u.sample()) for n, u in usage.items())
    ]
    print(f"  {line}: " + ", ".join(parts) + f"; load {os.getloadavg()[0]:.1f}", flush=True)


async def bench(args: argparse.Namespace, root: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The run; its figures go into `result` as they come (a run that fails keeps them)."""
    with postgres(args.db_url) as db_url, s3_server(root) as s3:
        result["postgresql"], pg_pid = pg_server(db_url)
        pg_port = make_url(db_url).port or 5432
        masters = [
            launch_master(
                f"m{n}", root, db_url, s3, args.master_nice, args.master_root, args.stages
            )
            for n in range(args.masters)
        ]
        workers: list[Worker] = []
        watchers: dict[str, Watcher] = {}
        tasks: list[asyncio.Task[None]] = []
        stopped: MasterProc | None = None
        try:
            t0 = time.monotonic()
            await asyncio.gather(*(wait_healthy(m.url) for m in masters))
            result["masters_healthy_s"] = round(time.monotonic() - t0, 2)
            async with httpx.AsyncClient(timeout=60) as client:
                for m in masters:
                    m.id = (m.data / "master-id").read_text().strip()
                    login = {"username": "admin", "password": ADMIN_PASSWORD}
                    reply = await client.post(m.url + "/api/v1/auth/login", json=login)
                    m.token = reply.raise_for_status().json()["token"]
            names = {m.id: m.name for m in masters}
            join = next(
                (m.data / "join-token").read_text().strip()
                for m in masters
                if (m.data / "join-token").exists()
            )
            urls = ",".join(m.url for m in masters)
            per = -(-args.agents // args.workers)
            for k, first in enumerate(range(0, args.agents, per)):
                count = min(per, args.agents - first)
                workers.append(Worker(f"w{k}", urls, join, first, count, root / "sim"))
            t0 = time.monotonic()
            for w in workers:
                w.nodes = (await asyncio.to_thread(w.read, "enrolled"))["nodes"]
            nodes = [n for w in workers for n in w.nodes]
            print(f"enrolled {len(nodes)} agents in {time.monotonic() - t0:.1f} s", flush=True)
            _, mapping = seed_instances(db_url, nodes, args.processes)
            # Enough stopped instances for every command: the kill's all go to the nodes of one
            # master (a third of the fleet, or fewer: twice that share).
            steady_share = args.steady_rate * args.seconds / len(nodes)
            kill_share = 2 * args.kill_rate * args.kill_window * args.masters / len(nodes)
            per_node = math.ceil(steady_share + kill_share) + 1
            _, pool_ids = seed_instances(db_url, nodes, per_node, "commands", "stopped")
            pool = Pool(pool_ids)
            t0 = time.monotonic()
            connecting = asyncio.gather(
                *(
                    w.ask(
                        {
                            "cmd": "connect",
                            "instances": {n: mapping[n] for n in w.nodes},
                            "stopped": {n: pool_ids[n] for n in w.nodes},
                        },
                        "connected",
                    )
                    for w in workers
                )
            )
            held: dict[str, str] = {}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connecting, args.connect_timeout)
                while time.monotonic() - t0 < args.connect_timeout:
                    with contextlib.suppress(RuntimeError):
                        held = await holders(masters, names)
                    if all(held.get(n) for n in nodes):
                        break
                    await asyncio.sleep(0.5)
            online = sum(bool(held.get(n)) for n in nodes)
            if online < len(nodes):
                raise RuntimeError(
                    f"{online} of {len(nodes)} agents online after "
                    f"{args.connect_timeout:.0f} s: the masters cannot hold this fleet here "
                    f"(their logs: {root}/m*.log)"
                )
            result["connected_s"] = round(time.monotonic() - t0, 1)
            result["nodes_per_master"] = {
                m.name: sum(h == m.name for h in held.values()) for m in masters
            }
            print(
                f"all online in {result['connected_s']} s: {result['nodes_per_master']}; "
                f"warming up {args.warmup:.0f} s",
                flush=True,
            )
            for m in masters:
                watchers[m.name] = Watcher(m, root)
                tasks.append(asyncio.create_task(watchers[m.name].run()))
            await asyncio.gather(*(w.ready.wait() for w in watchers.values()))
            await asyncio.sleep(args.warmup)

            # Steady state, commands through random masters.
            usage = {m.name: Usage(m.popen.pid) for m in masters}
            usage["postgres"] = Usage(pg_pid, tree=True)
            connections: list[int] = []
            steady = asyncio.create_task(
                send_commands(masters, pool, nodes, held, args.steady_rate, args.seconds)
            )
            start, steady_since = time.monotonic(), time.time()
            while time.monotonic() - start < args.seconds:
                await asyncio.sleep(min(5.0, args.seconds))
                sample_all(usage, f"t={time.monotonic() - start:4.0f}s")
                connections.append(await asyncio.to_thread(pg_connections, db_url))
            sent = await steady
            result["loop_lag_ms_steady"] = await loop_lags(masters, steady_since, time.time())
            result["pg_connections_per_master"] = {
                m.name: connections_to(m.popen.pid, pg_port) for m in masters
            }
            # Nodes that changed master meanwhile (a keepalive missed on a busy machine): which
            # master held them when a command was sent is not known.
            before, held = held, await holders(masters, names)
            result["steady_moves"] = sum(before[n] != held.get(n) for n in nodes)
            for cmd in sent:
                if before[cmd.node_id] != held.get(cmd.node_id):
                    cmd.holder = ""
            await asyncio.sleep(args.grace)
            runs = await executed(workers)
            result.update(tally(sent, runs, "steady", masters))
            result["steady_lost_detail"] = await lost_detail(masters[0], accepted_lost(sent, runs))
            for cross, label in ((False, "same_master"), (True, "cross_master")):
                ms = latencies(sent, runs, cross)
                result[f"command_ms_{label}_p50"] = round(pct(ms, 50), 1)
                result[f"command_ms_{label}_p99"] = round(pct(ms, 99), 1)
                result[f"command_ms_{label}_n"] = len(ms)
            result["usage_steady"] = {name: u.figures() for name, u in usage.items()}
            result["pg_connections_max"] = max(connections)
            if args.stages:
                marks = stage_marks([root / f"{m.name}.log" for m in masters])
                for c in sent:  # the bench's own ends: the API call, the agent's receipt
                    got = runs.get(c.instance_id)
                    run = got[0] if got else None
                    if run is not None and run.command_id in marks:
                        marks[run.command_id].update({"api.called": c.at, "agent.received": run.at})
                result["routed_stages_ms"] = stage_figures(marks.values())
                print(stage_table(marks.values()), flush=True)
            if args.steady_only:
                return result

            # kill -9 of the first master while commands for its nodes go through any master.
            victim, survivors = masters[0], masters[1:]
            held = await holders(survivors, names)
            moving = [n for n in nodes if held.get(n) == victim.name]
            print(f"kill -9 {victim.name} ({len(moving)} nodes), commands for them", flush=True)
            storm = asyncio.create_task(
                send_commands(masters, pool, moving, held, args.kill_rate, args.kill_window)
            )
            await asyncio.sleep(min(1.0, args.kill_window / 4))
            t_kill = time.time()
            victim.popen.kill()
            victim.popen.wait()
            del usage[victim.name]
            tasks[0].cancel()  # its console's stream is gone for good
            survivor_watchers = [watchers[m.name] for m in survivors]
            result["kill"] = await failover(
                survivors, survivor_watchers, names, moving, victim, t_kill, 60
            )
            result["kill"]["loop_lag_ms"] = await loop_lags(survivors, t_kill, time.time())
            kill_moving = moving
            sent = await storm
            await asyncio.sleep(args.grace)
            runs = await executed(workers)
            result.update(tally(sent, runs, "kill_commands", masters))
            print(f"  {result['kill']}", flush=True)
            for double in result["kill_commands_twice"]:
                print(f"  executed twice: {double}", flush=True)
            lost = accepted_lost(sent, runs)
            result["kill_commands_lost_detail"] = await lost_detail(survivors[0], lost)
            for gone in result["kill_commands_lost_detail"]:
                print(f"  lost: {gone}", flush=True)

            # SIGSTOP of the survivor holding the most nodes; they go to the others.
            held = await holders(survivors, names)
            stopped = max(survivors, key=lambda m: sum(h == m.name for h in held.values()))
            rest = [m for m in survivors if m is not stopped]
            moving = [n for n in nodes if held.get(n) == stopped.name]
            print(f"SIGSTOP {stopped.name} ({len(moving)} nodes)", flush=True)
            lines: dict[str, list[list[Any]]] = {}
            for w in workers:  # the kill's timelines; forgotten by the asking
                lines.update((await w.ask({"cmd": "timeline"}, "timeline"))["nodes"])
            result["kill"]["collateral_lost"] = collateral(lines, kill_moving, t_kill)
            t_stop = time.time()
            sampling = threading.Event()
            activity = asyncio.create_task(
                asyncio.to_thread(
                    sample_activity,
                    db_url,
                    survivors,
                    t_stop,
                    sampling,
                    root / "stop_activity.jsonl",
                )
            )
            os.kill(stopped.popen.pid, signal.SIGSTOP)
            result["stop"] = await failover(
                rest, [watchers[m.name] for m in rest], names, moving, stopped, t_stop, 60
            )
            sampling.set()
            result["stop"]["postgresql"] = await activity
            result["stop"]["loop_lag_ms"] = await loop_lags(
                rest, t_stop, time.time(), root / "stop_loop_lag.json"
            )
            lines = {}
            for w in workers:
                lines.update((await w.ask({"cmd": "timeline"}, "timeline"))["nodes"])
            result["stream_ends"] = {w.name: w.ends for w in watchers.values()}
            result["stop"]["collateral_lost"] = collateral(lines, moving, t_stop)
            # Each moved node's own timeline, to join with the survivors' logs (--stages).
            (root / "stop_timeline.json").write_text(
                json.dumps({"since": t_stop, "moving": moving, "nodes": lines})
            )
            result["stop"]["timeline"] = timeline_figures(
                lines, [watchers[m.name] for m in rest], moving, stopped, t_stop
            )
            print(f"  {result['stop']}", flush=True)
            os.kill(stopped.popen.pid, signal.SIGCONT)
            woken, stopped = stopped, None
            await asyncio.sleep(args.wake)
            result["after_wake_nodes_not_online"] = sum(
                not h for h in (await holders([*rest, woken], names)).values()
            )
            async with rest[0].api() as api:
                unknown = (await api.get("/instances", params={"state": "unknown"})).json()
            result["after_wake_instances_unknown"] = len(unknown)
            late = await executed(workers)  # a start lost at the kill that arrived since
            for gone in result["kill_commands_lost_detail"] + result["steady_lost_detail"]:
                gone["later"] = [
                    [r.command_id, r.at - gone["at"]] for r in late.get(gone["instance"], [])
                ]

            # After the failovers: the fleet on the masters that never failed (one, of three).
            for u in usage.values():
                u.restart()
            start = time.monotonic()
            while time.monotonic() - start < args.final:
                await asyncio.sleep(min(5.0, args.final))
                sample_all(usage, "after the failovers")
            held = await holders(rest, names)
            result["usage_after"] = {
                name: {**u.figures(), "nodes": sum(h == name for h in held.values())}
                for name, u in usage.items()
            }
            result["pg_connections_end"] = await asyncio.to_thread(pg_connections, db_url)
            result["heap_after"] = {m.name: await heap_figures(m) for m in [*rest, woken]}
            result["load_at_end"] = round(os.getloadavg()[0], 2)
            result["master_log_errors"] = {m.name: m.log_errors(root) for m in masters}
            return result
        finally:
            if stopped is not None:
                os.kill(stopped.popen.pid, signal.SIGCONT)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in workers:
                with contextlib.suppress(Exception):
                    w.popen.kill()
                    w.popen.wait(10)
            for m in masters:  # the run is over: nothing to measure in a clean stop
                m.popen.kill()
                m.popen.wait()


def table(r: dict[str, Any]) -> str:
    """The figures as RESULTS.md's table, the issue's goal beside each."""
    kill, stop = r["kill"], r["stop"]

    def seen(phase: dict[str, Any]) -> str:
        return (
            f"events {phase['events_s']} s ({phase['events_seen']}/{phase['nodes']}), "
            f"GET /nodes {phase['api_s']} s ({phase['api_seen']}/{phase['nodes']})"
        )

    def memory(name: str) -> str:
        return "PSS" if name == "postgres" else "RSS"

    def missed(phase: dict[str, Any]) -> str:
        per = ", ".join(f"{k} {v}" for k, v in phase["missed_per_console"].items())
        return f"{per} of {phase['nodes']}"

    def refused(prefix: str) -> str:
        codes = r[f"{prefix}_refused"]
        text = ", ".join(f"{n} x {code}" for code, n in sorted(codes.items())) or "none"
        late = r[f"{prefix}_refused_but_executed"]
        return text + (f" ({late} of them executed all the same)" if late else "")

    def twice() -> str:
        found = r["kill_commands_twice"] + r["steady_twice"]
        return (
            "; ".join(
                f"{d['instance']} asked {d['asked']} (held by {d['holder'] or '?'}, {d['status']}): "
                + ", ".join(f"{cid} via {via} +{dt} s" for cid, via, dt in d["starts"])
                for d in found
            )
            or "none"
        )

    def lost() -> str:
        return (
            "; ".join(
                f"{d['instance']} asked {d['asked']} (held by {d['holder'] or '?'}): "
                f"{d['now']}, later {d.get('later')}"
                for d in r["kill_commands_lost_detail"] + r["steady_lost_detail"]
            )
            or "none"
        )

    cross = (
        f"{r['command_ms_cross_master_p50']} / {r['command_ms_cross_master_p99']} ms "
        f"({r['command_ms_cross_master_n']})"
        if r["command_ms_cross_master_n"]
        else f"none routed: {r['steady_not_routed']} answered 409 by a master not holding the node"
    )
    rows = [
        (
            "masters healthy (3 started at once on an empty database)",
            f"{r['masters_healthy_s']} s",
            "",
        ),
        (
            "nodes per master (agents' lists rotated, the rest shuffled per node)",
            ", ".join(f"{k} {v}" for k, v in r["nodes_per_master"].items()),
            "",
        ),
        ("kill -9: all its nodes online elsewhere", seen(kill), "≤ 5 s [2 s]"),
        ("SIGSTOP: all its nodes online elsewhere", seen(stop), "≤ 6 s [3 s]"),
        (
            "moved nodes' `online` events missed by each survivor's console",
            f"kill: {missed(kill)}; SIGSTOP: {missed(stop)}",
            "0",
        ),
        (
            "commands during the kill: sent / accepted / executed once",
            f"{r['kill_commands_sent']} / {r['kill_commands_accepted']} / "
            f"{r['kill_commands_executed_once']}",
            "",
        ),
        (
            "  lost / executed twice",
            f"{r['kill_commands_lost']} / {r['kill_commands_executed_twice']}",
            "0 / 0",
        ),
        ("  refused", refused("kill_commands"), ""),
        ("  each executed twice: its starts (id, via, s after the call)", twice(), ""),
        ("  each lost (kill, steady): where sent, its instance, a start since", lost(), ""),
        (
            "commands in steady state: sent / accepted / lost / twice",
            f"{r['steady_sent']} / {r['steady_accepted']} / {r['steady_lost']} / "
            f"{r['steady_executed_twice']}; refused: {refused('steady')}",
            "",
        ),
        (
            "command API call -> agent, master holding the node, p50 / p99",
            f"{r['command_ms_same_master_p50']} / {r['command_ms_same_master_p99']} ms "
            f"({r['command_ms_same_master_n']})",
            "",
        ),
        ("command routed between masters, p50 / p99", cross, "p99 ≤ 150 ms [50 ms]"),
        (
            "after SIGCONT: nodes not online / instances unknown",
            f"{r['after_wake_nodes_not_online']} / {r['after_wake_instances_unknown']}",
            "0 / 0",
        ),
        ("nodes that changed master in the steady state", f"{r['steady_moves']}", "0"),
        (
            "survivors' own nodes that lost their link meanwhile: kill / SIGSTOP",
            f"{kill.get('collateral_lost')} / {stop.get('collateral_lost')}",
            "0",
        ),
        (
            "SIGSTOP per node p50 / p90 / max, s: link lost; last dial; hello sent; online seen",
            "; ".join(
                "/".join(map(str, stop.get("timeline", {}).get(k, [])))
                for k in ("link_lost_s", "last_dial_s", "hello_sent_s", "online_seen_s")
            ),
            "",
        ),
        (
            "masters' loop lag p99 / max, ms: steady; kill (survivors); SIGSTOP (the rest)",
            "; ".join(
                ", ".join(f"{k} {v[0]} / {v[1]}" for k, v in lags.items())
                for lags in (
                    r.get("loop_lag_ms_steady", {}),
                    kill.get("loop_lag_ms", {}),
                    stop.get("loop_lag_ms", {}),
                )
            ),
            "",
        ),
        (
            "agents' keepalive (ping s, pong deadline s, redial after a hung master)",
            r.get("agent_keepalive", ""),
            "",
        ),
        (
            "ERROR lines in the masters' logs",
            ", ".join(f"{k} {v}" for k, v in r["master_log_errors"].items()),
            "0",
        ),
    ]
    for name, u in r["usage_steady"].items():
        rows.append(
            (
                f"{name}: CPU avg / max, {memory(name)} last (steady)",
                f"{u['cpu_cores_avg']} / {u['cpu_cores_max']} cores, {u['rss_mib_last']} MiB",
                "",
            )
        )
    for name, u in r["usage_after"].items():
        held = f", holding {u['nodes']} nodes" if name != "postgres" else ""
        rows.append(
            (
                f"{name} after the failovers{held}: CPU avg / max, {memory(name)} last",
                f"{u['cpu_cores_avg']} / {u['cpu_cores_max']} cores, {u['rss_mib_last']} MiB",
                "",
            )
        )
    rows.append(
        (
            "PostgreSQL connections: max (steady) / end; per master (steady)",
            f"{r['pg_connections_max']} / {r['pg_connections_end']}; "
            + ", ".join(f"{k} {v}" for k, v in r["pg_connections_per_master"].items()),
            "",
        )
    )
    lines = ["| what | figure | goal |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--watch", default=None, help=argparse.SUPPRESS)  # a Watcher's process
    p.add_argument("--token", default="", help=argparse.SUPPRESS)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--processes", type=int, default=20)
    p.add_argument("--masters", type=int, default=3, help="at least 3 (one killed, one stopped)")
    p.add_argument("--seconds", type=float, default=60, help="the steady window")
    p.add_argument("--warmup", type=float, default=10)
    p.add_argument("--workers", type=int, default=0, help="simulator processes (0: 1 per 250)")
    p.add_argument("--steady-rate", type=float, default=2, help="commands a second, steady")
    p.add_argument("--kill-rate", type=float, default=20, help="commands a second, the kill")
    p.add_argument("--kill-window", type=float, default=10, help="seconds of commands")
    p.add_argument("--grace", type=float, default=5, help="seconds for late commands to land")
    p.add_argument("--wake", type=float, default=8, help="seconds after SIGCONT")
    p.add_argument("--final", type=float, default=15, help="seconds of the last master alone")
    p.add_argument("--connect-timeout", type=float, default=300, help="s for all to be online")
    p.add_argument("--master-nice", type=int, default=0)
    p.add_argument("--stages", action="store_true", help="where routed commands' time goes")
    p.add_argument("--steady-only", action="store_true", help="end after the steady state")
    p.add_argument("--master-root", type=Path, default=ROOT, help="the masters' source tree")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--db-url", default=None, help="an empty database on a local PostgreSQL server")
    p.add_argument(
        "--agent-keepalive",
        default="",
        help='the simulated agents\' "ping s,pong deadline s,round|now|backoff" (redial after a hung '
        "master), to replay another version's; default: this tree's agent",
    )
    args = p.parse_args()
    if args.watch:
        asyncio.run(Stream(args.watch, args.token).run())
        return
    if args.masters < 3:
        p.error("--masters must be at least 3")
    args.workers = args.workers or max(1, min(4, args.agents // 250))
    if args.agent_keepalive:
        os.environ[KEEPALIVE_ENV] = args.agent_keepalive  # the simulator processes inherit it
    compile_sources()
    root = Path(args.data_dir or f"/tmp/gdos-cluster-bench-{os.getpid()}")
    root.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"cluster bench: {args.masters} masters, {args.agents} agents x {args.processes} "
        f"processes, {args.seconds:.0f} s steady; commit {commit}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; data in {root}",
        flush=True,
    )
    result: dict[str, Any] = {
        "agents": args.agents,
        "processes": args.processes,
        "masters": args.masters,
        "commit": commit,
        "master_root": str(args.master_root),
        "load_at_start": round(os.getloadavg()[0], 2),
        "agent_keepalive": "{}, {}, {}".format(*agent_keepalive()),
    }
    try:
        asyncio.run(bench(args, root, result))
    except RuntimeError as exc:
        print(json.dumps(result))  # the figures so far
        raise SystemExit(f"bench.cluster: {exc}") from None
    if args.steady_only:
        result["load_at_end"] = round(os.getloadavg()[0], 2)
        print(
            "steady: command through the holding master p50 / p99 "
            f"{result['command_ms_same_master_p50']} / {result['command_ms_same_master_p99']} ms "
            f"({result['command_ms_same_master_n']}); routed "
            f"{result['command_ms_cross_master_p50']} / {result['command_ms_cross_master_p99']} ms "
            f"({result['command_ms_cross_master_n']}); load {result['load_at_start']} -> "
            f"{result['load_at_end']}"
        )
        print(json.dumps(result))
        return
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
