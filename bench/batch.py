#!/usr/bin/env python3
"""Batch start/stop of 100 processes over 10 real agents, next to supervisord, PM2 and Circus.

    .venv/bin/python bench/batch.py                  # everything, 3 rounds (a few minutes)
    .venv/bin/python bench/batch.py --only gdos      # just GDOS (e.g. while profiling)
    .venv/bin/python bench/batch.py --n 100 --agents 10 --rounds 5

Every tool runs the same small long-running Python program (`bench/prog.py` semantics, written
to the work dir) as N separate processes, with stdout/stderr to files and respawn on a crash.
Peers are installed on first use: supervisor and circus from PyPI into bench/.peers-venv, pm2
from npm into bench/.node. GDOS's master and each agent run in a session of their own, as a
service manager starts daemons (systemd gives each service its own session, so, with the kernel's
autogroup, its own scheduling group, as each program here has); `--one-session` keeps them in
this bench's session, as before 2026-12-08 (then 10 agents and the master shared one group's CPU
against 100 programs' groups, a tenth of what one agent per host has against its own). The
peers' daemons get the same: supervisord and circusd in a session of their own (PM2's daemon
detaches into one by itself); their programs stay in their daemon's session, as they place them.
Measured, per tool:
  start-all   from the request until the manager says all N run (GDOS: POST /systems/{id}/start
              until the operation's `succeeded` event on the event stream; supervisord:
              startAllProcesses(wait) over XML-RPC; Circus: `start` with waiting over ZeroMQ;
              PM2: pm2.start(apps) through its node API). Clients are connected beforehand, so
              no CLI start-up is counted for anybody. Then the N processes are counted.
  stop-all    the same, for stopping (SIGTERM; all programs exit at once on it).
  respawn     kill -9 one process; time until its replacement exists (a new child of the
              managing daemon running the program), polled every 0.2 ms; median of 5.
  RSS         of the managing daemon(s) with the N running.
The limit (`--only limit`, in every full run): the same N programs started by posix_spawn from
this one process with no bookkeeping until each is seen alive, and stopped by one SIGTERM each
until all are reaped; every tool's start-all and stop-all are printed over it.

--disk-pressure runs it all while another process keeps the disk busy with buffered writes (a
2 GiB file rewritten over and over in the work dir, as a database or a chatty service would),
and times agent 0's loopback /healthz and the master's every 20 ms meanwhile (`--probe-agent`
alone does that):
    .venv/bin/python bench/batch.py --disk-pressure --n 10 --agents 1 --rounds 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import xmlrpc.client
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from tests.support import Agent, Master, free_port, wait_for  # noqa: E402

BENCH = Path(__file__).resolve().parent
PEERS_VENV = BENCH / ".peers-venv"
NODE_DIR = BENCH / ".node"
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "warning")
PY = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

PROG = f"""#!{PY}
import signal, sys, time
def bye(*_):
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
signal.signal(signal.SIGINT, bye)
while True:
    time.sleep(3600)
"""


# -- helpers ------------------------------------------------------------------------------------


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1/5 min)"


def children(pid: int) -> set[int]:
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out.update(int(x) for x in f.read().split())
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_prog(cmdline: list[str] | None, status: str, root: Path) -> bool:
    """A live process (not a zombie) running this bench's program (under `root`)."""
    needle = str(root)
    return status != psutil.STATUS_ZOMBIE and any(
        "prog.py" in part and needle in part for part in cmdline or []
    )


def running_progs(root: Path) -> list[int]:
    """Live processes running this bench's program (under `root`)."""
    return [
        proc.pid
        for proc in psutil.process_iter(["cmdline", "status"])
        if is_prog(proc.info["cmdline"], proc.info["status"], root)
    ]


def alive(pid: int, root: Path) -> bool:
    """`pid` runs the program, by the test `running_progs` applies (without a scan of all)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return is_prog(proc.cmdline(), proc.status(), root)
    except psutil.Error:
        return False


def respawn_latency(daemon_pid: int, victim: int, timeout: float = 30.0) -> float:
    """kill -9 `victim`; seconds until a new child of the daemon runs the program."""
    before = children(daemon_pid)
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        for pid in children(daemon_pid) - before:
            if "prog.py" in cmdline(pid):
                return time.perf_counter() - t0
        time.sleep(0.0002)
    raise TimeoutError(f"no respawn of {victim} within {timeout} s")


def rss_mib(pids: list[int]) -> list[float]:
    return [psutil.Process(p).memory_info().rss / 2**20 for p in pids]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Result:
    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.start: list[float] = []
        self.stop: list[float] = []
        self.gone: list[float] = []  # stop-all until the last process is gone (seen by us)
        self.respawn: list[float] = []
        self.rss: list[float] = []
        self.note = ""
        self.load = ""
        # GDOS: each operation's parts in seconds, per kind (see `op_parts`).
        self.parts: dict[str, dict[str, list[float]]] = {}

    def row(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "start_all_s": median(self.start),
            "start_all_min_s": min(self.start, default=float("nan")),
            "stop_all_s": median(self.stop),
            "stop_all_min_s": min(self.stop, default=float("nan")),
            "stop_all_gone_s": median(self.gone),
            "respawn_ms": median(self.respawn) * 1000,
            "daemon_rss_mib": sum(self.rss),
            "start_all_rounds_s": [round(x, 3) for x in self.start],
            "stop_all_rounds_s": [round(x, 3) for x in self.stop],
            "note": self.note,
            "load": self.load,
            **(
                {
                    "parts_ms": {
                        kind: {k: round(median(v) * 1000, 1) for k, v in parts.items()}
                        for kind, parts in self.parts.items()
                    }
                }
                if self.parts
                else {}
            ),
        }


class LoopProber:
    """GETs a daemon's /healthz every 20 ms (an agent's loopback `--port`, or the master's). The
    answer's latency is how long the daemon's event loop was kept from running: its stalls, seen
    from outside."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.latencies: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            t0 = time.perf_counter()
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gdos\r\nConnection: close\r\n\r\n")
                while s.recv(4096):
                    pass
            self.latencies.append(time.perf_counter() - t0)
            self._done.wait(0.02)

    def close(self) -> str:
        self._done.set()
        self._thread.join(60)
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"{self.name} /healthz every 20 ms during the rounds: median {median(ms):.1f} "
            f"ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms, {sum(x > 100 for x in ms)} over 100 ms "
            f"({len(ms)} probes)"
        )


def time_until_count(root: Path, n: int, t0: float, timeout: float = 60) -> float:
    """Seconds from `t0` until exactly `n` of the program's processes remain (polled)."""
    while len(running_progs(root)) != n:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{n} processes")
        time.sleep(0.005)
    return time.perf_counter() - t0


def wait_count(root: Path, n: int, timeout: float = 60) -> None:
    wait_for(lambda: len(running_progs(root)) == n, timeout, interval=0.1, what=f"{n} processes")


# -- GDOS -----------------------------------------------------------------------------------------


class OpWatcher:
    """Reads the event stream; remembers when each operation reached a final state."""

    def __init__(self, url: str, token: str) -> None:
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://") + "/api/v1/events"
        self._cm = connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"})
        self.ws = self._cm.__enter__()
        self.ws.send(json.dumps({"batch": True}))  # what a console does: arrays per burst
        self.done: dict[str, tuple[float, dict[str, Any]]] = {}
        self.seen_at: dict[str, float] = {}  # wall-clock time of each final event's receipt
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            for raw in self.ws:
                now = time.perf_counter()
                if '"topic":"operation"' not in raw:
                    continue
                decoded = json.loads(raw)
                for event in decoded if isinstance(decoded, list) else [decoded]:
                    data = event["data"]
                    if event["topic"] == "operation" and data["state"] != "running":
                        with self.cond:
                            self.seen_at.setdefault(
                                data["id"], time.time() - (time.perf_counter() - now)
                            )
                            self.done.setdefault(data["id"], (now, data))
                            self.cond.notify_all()

    def wait(self, op_id: str, timeout: float = 120) -> tuple[float, dict[str, Any]]:
        with self.cond:
            if not self.cond.wait_for(lambda: op_id in self.done, timeout):
                raise TimeoutError(f"operation {op_id}")
            return self.done[op_id]

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def wall(stamp: str) -> float:
    """An ISO 8601 UTC timestamp of the API as seconds since the epoch."""
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def op_parts(asked: float, seen: float, data: dict[str, Any]) -> dict[str, float]:
    """Where an operation's time went, from the wall-clock stamps of its final event (one
    level): `head` from the request until its level began (the operation's row, the level's
    load), `level` until its last step was seen done (the level's write, views, commands, the
    agents' work, their reports' apply), `tail` until the operation ended, `out` until its
    event reached this client (the final save, publication, the event stream)."""
    begun = min(wall(st["started_at"]) for st in data["steps"] if st["started_at"])
    last = max(wall(st["finished_at"]) for st in data["steps"] if st["finished_at"])
    ended = wall(data["finished_at"])
    return {"head": begun - asked, "level": last - begun, "tail": ended - last, "out": seen - ended}


def gdos_package(dest: Path) -> Path:
    path = dest / "prog.zip"
    manifest = {
        "name": "prog",
        "version": "1.0.0",
        "entrypoint": "bin/prog.py",
        "stop_timeout": 10,
        "restart": "on-failure",
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("service.json", json.dumps(manifest))
        info = zipfile.ZipInfo("bin/prog.py")
        info.external_attr = 0o755 << 16
        zf.writestr(info, PROG)
    return path


def from_root(root: Path | None, module: str) -> list[str] | None:
    """The command that runs `module` (master, agent) from another source tree (before/after)."""
    if root is None:
        return None
    code = f"import runpy, sys; sys.path.insert(0, {str(root)!r}); runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", code]


def bench_gdos(
    work: Path,
    n: int,
    n_agents: int,
    rounds: int,
    label: str = "GDOS",
    probe: bool = False,
    root: Path | None = None,
    one_session: bool = False,
) -> Result:
    res = Result(label)
    work.mkdir(parents=True, exist_ok=True)
    # A generous grace: on a shared, overloaded machine a starved agent misses heartbeats.
    master = Master(
        work / "master",
        extra=["--log-level", LOG_LEVEL, "--heartbeat-grace", "15"],
        program=from_root(root, "master"),
    )
    master.own_session = not one_session
    agents: list[Agent] = []
    try:
        master.launch()
        api = master.api()
        probe_port = free_port()
        agents = [
            Agent(
                master,
                work / f"agent-{i}",
                extra=["--log-level", LOG_LEVEL]
                + (["--port", str(probe_port)] if probe and i == 0 else []),
                program=from_root(root, "agent"),
            )
            for i in range(n_agents)
        ]
        for a in agents:
            a.own_session = not one_session
            a.start()
        nodes: list[str] = []
        for a in agents:
            cred = a.work_dir / "agent-credential.json"
            wait_for(cred.exists, 60, what="enrolment")
            nodes.append(a.node_id)
        wait_for(lambda: all(x["status"] == "online" for x in api.get("/nodes")), 60, what="agents")
        api.upload(gdos_package(work))
        system = api.post("/systems", {"name": "bench"})
        module = api.post(f"/systems/{system['id']}/modules", {"name": "p", "package": "prog"})
        for i in range(n):
            api.post("/instances", {"module_id": module["id"], "node_id": nodes[i % n_agents]})
        wait_for(
            lambda: all(
                i["state"] == "stopped" for i in api.get(f"/instances?system_id={system['id']}")
            ),
            300,
            interval=0.5,
            what="deploys",
        )
        watcher = OpWatcher(master.url, api.token or "")
        res.load = load()
        procs = [psutil.Process(master.pid)] + [psutil.Process(a.pid) for a in agents]
        cpu: dict[str, list[tuple[float, float]]] = {"start": [], "stop": []}

        def cpu_now() -> list[float]:
            return [sum(p.cpu_times()[:2]) for p in procs]

        probers = (
            [LoopProber("agent 0", probe_port), LoopProber("master", master.port)] if probe else []
        )
        for _ in range(rounds):
            for kind, out in (("start", res.start), ("stop", res.stop)):
                time.sleep(1.0)  # let the previous round's reports and saves settle
                c0 = cpu_now()
                asked, t0 = time.time(), time.perf_counter()
                op = api.post(f"/systems/{system['id']}/{kind}", expect=202)
                t1, final = watcher.wait(op["operation_id"])
                c1 = cpu_now()
                assert final["state"] == "succeeded", final
                out.append(t1 - t0)
                parts = op_parts(asked, watcher.seen_at[final["id"]], final)
                for part, seconds in parts.items():
                    res.parts.setdefault(kind, {}).setdefault(part, []).append(seconds)
                cpu[kind].append((c1[0] - c0[0], sum(c1[1:]) - sum(c0[1:])))
                if kind == "stop":
                    res.gone.append(time_until_count(work, 0, t0))
                wait_count(work, n if kind == "start" else 0)
        probed = "; ".join(p.close() for p in probers)
        # Respawn after kill -9, and memory with everything running.
        op = api.post(f"/systems/{system['id']}/start", expect=202)
        watcher.wait(op["operation_id"])
        wait_count(work, n)
        time.sleep(2.0)
        insts = api.get(f"/instances?system_id={system['id']}")
        agent_of = {a.node_id: a for a in agents}
        for inst in insts[:5]:
            res.respawn.append(respawn_latency(agent_of[inst["node_id"]].pid, inst["pid"]))
            time.sleep(0.3)
        wait_count(work, n)
        time.sleep(1.0)
        per_agent = rss_mib([a.pid for a in agents])
        res.rss = per_agent
        master_rss = rss_mib([master.pid])[0]
        res.note = (
            f"{n_agents} agents: {median(per_agent):.1f} MiB each (min {min(per_agent):.1f}, "
            f"max {max(per_agent):.1f}); master {master_rss:.1f} MiB not included. CPU per "
            "operation, master / all agents: "
            + ", ".join(
                f"{k} {median([m for m, _ in v]) * 1000:.0f} / {median([a for _, a in v]) * 1000:.0f} ms"
                f" (means, finer than a tick: {statistics.mean(m for m, _ in v) * 1000:.1f} / "
                f"{statistics.mean(a for _, a in v) * 1000:.1f})"
                for k, v in cpu.items()
            )
            + "; parts per operation (medians, ms): "
            + ", ".join(
                f"{kind} " + " / ".join(f"{k} {median(v) * 1000:.1f}" for k, v in parts.items())
                for kind, parts in res.parts.items()
            )
            + (f"; {probed}" if probed else "")
        )
        op = api.post(f"/systems/{system['id']}/stop", expect=202)
        watcher.wait(op["operation_id"])
        watcher.close()
        api.close()
    except BaseException:
        print(f"GDOS run failed; master log tail:\n{master.tail(40)}", file=sys.stderr)
        raise
    finally:
        for a in agents:
            a.stop()
        master.stop()
        for pid in running_progs(work):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
    return res


def main() -> int:
    compile_sources()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--only", choices=["limit", "gdos", "supervisord", "circus", "pm2"], action="append"
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/gdos-bench-batch"))
    p.add_argument(
        "--disk-pressure", action="store_true", help="another process writes to disk meanwhile"
    )
    p.add_argument(
        "--probe-agent",
        action="store_true",
        help="time agent 0's and the master's /healthz every 20 ms (their event loops' stalls); "
        "on with --disk-pressure",
    )
    p.add_argument(
        "--root", type=Path, default=None, help="run GDOS's master and agents from this source tree"
    )
    p.add_argument(
        "--one-session",
        action="store_true",
        help="GDOS's master and agents in this bench's session (before 2026-12-08) rather than "
        "each in a session of its own, as a service manager starts them",
    )
    args = p.parse_args()
    if args.root:
        compile_sources(args.root)
    tools = args.only or ["limit", "gdos", "supervisord", "circus", "pm2"]
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    results = []
    for tool in tools:
        print(f"-- {tool} ({load()})", flush=True)
        with disk_writer(args.work) if args.disk_pressure else contextlib.nullcontext():
            if tool == "gdos":
                probe = args.probe_agent or args.disk_pressure
                r = bench_gdos(
                    args.work / "gdos",
                    args.n,
                    args.agents,
                    args.rounds,
                    probe=probe,
                    root=args.root,
                    one_session=args.one_session,
                )
            else:
                r = PEERS[tool](args.work / tool, args.n, args.rounds, args.one_session)
        results.append(r)
        print(json.dumps(r.row()), flush=True)
    print_table(results, args)
    return 0


WRITER = """
import os, sys
block = b"x" * (1 << 20)
path = os.path.join(sys.argv[1], "pressure.bin")
parent = os.getppid()
while os.getppid() == parent:  # a bench killed mid-run must not leave it writing for good
    with open(path, "wb") as f:  # as `dd bs=1M count=2048 of=...` in a loop
        for _ in range(2048):
            f.write(block)
            if os.getppid() != parent:
                break
"""


@contextlib.contextmanager
def disk_writer(work: Path) -> Iterator[None]:
    """Buffered writes of 2 GiB over and over, for as long as the block runs."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(work)])
    try:
        time.sleep(2.0)  # until writeback is under way
        yield
    finally:
        writer.kill()
        writer.wait()
        (work / "pressure.bin").unlink(missing_ok=True)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"{args.n} processes; GDOS over {args.agents} agents; {args.rounds} rounds (median, best)"
        + ("; another process writing to disk throughout" if args.disk_pressure else "")
    )
    print(
        "| tool | start-all | stop-all | stop-all, last process gone "
        "| respawn after kill -9 | daemon RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        row = r.row()
        print(
            f"| {r.tool} | {row['start_all_s']:.3f} s ({row['start_all_min_s']:.3f}) "
            f"| {row['stop_all_s']:.3f} s ({row['stop_all_min_s']:.3f}) "
            f"| {row['stop_all_gone_s']:.3f} s "
            f"| {row['respawn_ms']:.1f} ms "
            f"| {f'{rss:.1f} MiB' if (rss := row['daemon_rss_mib']) else '-'} |"
        )
    for r in results:
        if r.note:
            print(f"- {r.tool}: {r.note}")
    limit = next((r for r in results if r.tool == "limit"), None)
    if limit is not None:
        bare = limit.row()
        for r in results:
            if r is not limit:
                row = r.row()
                print(
                    f"- {r.tool} / limit: start-all {row['start_all_s'] / bare['start_all_s']:.2f}, "
                    f"stop-all {row['stop_all_s'] / bare['stop_all_s']:.2f} (medians)"
                )


# -- the limit ------------------------------------------------------------------------------------


def bare_spawn(prog: Path, logs: Path, name: str) -> int:
    """One program started the cheapest way: posix_spawn, its own session, stdin from /dev/null
    and stdout/stderr to files, as an agent starts a service (the program's shebang runs it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(logs / f"{name}.out"), flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, str(logs / f"{name}.err"), flags, 0o644),
    ]
    return os.posix_spawn(
        str(prog), [str(prog), name], dict(os.environ), file_actions=actions, setsid=True
    )


def bench_limit(work: Path, n: int, rounds: int, one_session: bool = False) -> Result:
    """What the machine allows: the same N programs started by posix_spawn from this one process
    with no bookkeeping until all are alive (counted as for the peers), and stopped by one
    SIGTERM each until all are reaped. Respawn: kill -9, reap, spawn again, in line.
    `one_session` changes nothing here: the launcher is this process, there is no daemon to place."""
    res = Result("limit")
    prog = write_prog(work)
    logs = work / "logs"
    res.load = load()
    pids: dict[str, int] = {}
    spawn_only: list[float] = []

    def stop_all() -> None:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        pids.clear()

    try:
        for _ in range(rounds):
            time.sleep(1.0)
            t0 = time.perf_counter()
            for i in range(n):
                pids[f"p{i}"] = bare_spawn(prog, logs, f"p{i}")
            spawn_only.append(time.perf_counter() - t0)
            waiting = list(pids.values())
            while waiting := [pid for pid in waiting if not alive(pid, work)]:
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError(f"{len(waiting)} of {n} programs not alive")
                time.sleep(0.0002)
            res.start.append(time.perf_counter() - t0)
            time.sleep(1.0)
            t0 = time.perf_counter()
            stop_all()
            res.stop.append(time.perf_counter() - t0)
            res.gone.append(time_until_count(work, 0, t0))
        for i in range(n):
            pids[f"p{i}"] = bare_spawn(prog, logs, f"p{i}")
        wait_count(work, n)
        time.sleep(1.0)
        for name in list(pids)[:5]:
            t0 = time.perf_counter()
            os.kill(pids[name], signal.SIGKILL)
            os.waitpid(pids[name], 0)
            pids[name] = bare_spawn(prog, logs, name)
            res.respawn.append(time.perf_counter() - t0)
            time.sleep(0.3)
        res.note = (
            "posix_spawn from one Python process, no bookkeeping; start-all is until each "
            "program is seen alive in /proc as the peers' are counted (the spawn calls alone: "
            f"{median(spawn_only):.3f} s), "
            "stop-all until all are reaped (waitpid); no daemon, so no RSS"
        )
    finally:
        stop_all()
    return res


# -- peers ----------------------------------------------------------------------------------------


def ensure_python_peers() -> Path:
    """supervisor and circus from PyPI into a bench-local venv (first run only)."""
    py = PEERS_VENV / "bin" / "python"
    if (
        not (PEERS_VENV / "bin" / "circusd").exists()
        or not (PEERS_VENV / "bin" / "supervisord").exists()
    ):
        print("installing supervisor and circus into", PEERS_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "supervisor==4.3.0", "circus==0.19.0"],
            check=True,
        )
    return py


def ensure_pm2() -> Path:
    pm2 = NODE_DIR / "node_modules" / "pm2"
    if not pm2.exists():
        print("installing pm2 into", NODE_DIR, flush=True)
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "pm2@6"],
            check=True,
        )
    return pm2


def write_prog(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    prog = work / "prog.py"
    prog.write_text(PROG)
    prog.chmod(0o755)
    return prog


def measure_peer(
    res: Result,
    work: Path,
    n: int,
    rounds: int,
    start: Callable[[], float],
    stop: Callable[[], float],
    daemon_pid: Callable[[], int],
    pids: Callable[[], list[int]],
) -> None:
    res.load = load()
    for _ in range(rounds):
        for act, out, want in ((start, res.start, n), (stop, res.stop, 0)):
            time.sleep(1.0)
            t0 = time.perf_counter()
            out.append(act())
            if want == 0:
                res.gone.append(time_until_count(work, 0, t0))
            wait_count(work, want)
    start()
    wait_count(work, n)
    time.sleep(2.0)
    daemon = daemon_pid()
    for victim in pids()[:5]:
        res.respawn.append(respawn_latency(daemon, victim))
        time.sleep(0.3)
    wait_count(work, n)
    time.sleep(1.0)
    res.rss = rss_mib([daemon])
    stop()


def bench_supervisord(work: Path, n: int, rounds: int, one_session: bool = False) -> Result:
    res = Result("supervisord")
    py = ensure_python_peers()
    prog = write_prog(work)
    port = free_port()
    programs = "".join(
        f"""
[program:p{i}]
command={PY} {prog} p{i}
autostart=false
autorestart=true
startsecs=0
startretries=3
stopwaitsecs=10
stdout_logfile={work}/logs/p{i}.out
stderr_logfile={work}/logs/p{i}.err
"""
        for i in range(n)
    )
    conf = work / "supervisord.conf"
    conf.write_text(
        f"""[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
nodaemon=true
[inet_http_server]
port=127.0.0.1:{port}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
{programs}"""
    )
    daemon = subprocess.Popen(
        [str(py.parent / "supervisord"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=not one_session,
    )
    rpc: Any = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    try:
        wait_for(
            lambda: rpc.supervisor.getState()["statename"] == "RUNNING", 30, what="supervisord"
        )
        res.note = "startsecs=0 (RUNNING as soon as spawned, like GDOS), autorestart=true, XML-RPC"

        def timed(call: Callable[[], Any]) -> float:
            t0 = time.perf_counter()
            call()
            return time.perf_counter() - t0

        def pids() -> list[int]:
            return [p["pid"] for p in rpc.supervisor.getAllProcessInfo() if p["pid"]]

        measure_peer(
            res,
            work,
            n,
            rounds,
            lambda: timed(lambda: rpc.supervisor.startAllProcesses(True)),
            lambda: timed(lambda: rpc.supervisor.stopAllProcesses(True)),
            lambda: daemon.pid,
            pids,
        )
    finally:
        daemon.terminate()
        daemon.wait(30)
    return res


CIRCUS_CALL = """
import json, sys, time
from circus.client import CircusClient
c = CircusClient(endpoint=sys.argv[1], timeout=120)
c.call({"command": "list", "properties": {}})
for line in sys.stdin:
    cmd = line.strip()
    t0 = time.perf_counter()
    if cmd == "pids":
        out = []
        for w in c.call({"command": "list", "properties": {}})["watchers"]:
            out += c.call({"command": "list", "properties": {"name": w}}).get("pids", [])
        print(json.dumps(out), flush=True)
        continue
    r = c.call({"command": cmd, "properties": {"waiting": True}})
    print(json.dumps({"s": time.perf_counter() - t0, "status": r.get("status")}), flush=True)
"""


def bench_circus(work: Path, n: int, rounds: int, one_session: bool = False) -> Result:
    res = Result("Circus")
    py = ensure_python_peers()
    prog = write_prog(work)
    endpoint, pubsub = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    watchers = "".join(
        f"""
[watcher:p{i}]
cmd = {PY} {prog} p{i}
numprocesses = 1
autostart = true
respawn = true
warmup_delay = 0
stdout_stream.class = FileStream
stdout_stream.filename = {work}/logs/p{i}.out
stderr_stream.class = FileStream
stderr_stream.filename = {work}/logs/p{i}.err
"""
        for i in range(n)
    )
    conf = work / "circus.ini"
    conf.write_text(
        f"""[circus]
endpoint = {endpoint}
pubsub_endpoint = {pubsub}
statsd = false
check_delay = 5
{watchers}"""
    )
    daemon = subprocess.Popen(
        [str(py.parent / "circusd"), str(conf)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=not one_session,
    )
    client = subprocess.Popen(
        [str(py), "-c", CIRCUS_CALL, endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None

    def call(cmd: str) -> Any:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(cmd + "\n")
        client.stdin.flush()
        return json.loads(client.stdout.readline())

    try:
        wait_for(lambda: call("pids") is not None, 30, what="circusd")
        # Circus's `start` (all) starts the autostart watchers: they start with the daemon,
        # so stop them first; the rounds then measure start-all and stop-all as for the others.
        wait_count(work, n)
        call("stop")
        wait_count(work, 0)
        res.note = "warmup_delay=0, respawn=true, ZeroMQ client (waiting=True)"
        measure_peer(
            res,
            work,
            n,
            rounds,
            lambda: call("start")["s"],
            lambda: call("stop")["s"],
            lambda: daemon.pid,
            lambda: call("pids"),
        )
    finally:
        client.kill()
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    return res


PM2_CALL = """
const pm2 = require(process.argv[2]);
const apps = JSON.parse(require('fs').readFileSync(process.argv[3]));
const rl = require('readline').createInterface({input: process.stdin});
pm2.connect((err) => {
  if (err) { console.error(err); process.exit(2); }
  console.log(JSON.stringify({ready: true}));
  rl.on('line', (cmd) => {
    const t0 = process.hrtime.bigint();
    const done = (e, out) => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (cmd === 'pids') {
        console.log(JSON.stringify((out || []).filter(p => p.pid).map(p => p.pid)));
      } else {
        console.log(JSON.stringify({s, error: e ? String(e) : null}));
      }
    };
    if (cmd === 'start') pm2.start(apps, done);
    else if (cmd === 'stop') pm2.stop('all', done);
    else if (cmd === 'pids') pm2.list(done);
    else if (cmd === 'kill') pm2.killDaemon(() => { console.log('{}'); process.exit(0); });
  });
});
"""


def bench_pm2(work: Path, n: int, rounds: int, one_session: bool = False) -> Result:
    res = Result("PM2")
    pm2 = ensure_pm2()
    prog = write_prog(work)
    apps = [
        {
            "name": f"p{i}",
            "script": str(prog),
            "interpreter": PY,
            "args": [f"p{i}"],
            "autorestart": True,
            "out_file": f"{work}/logs/p{i}.out",
            "error_file": f"{work}/logs/p{i}.err",
        }
        for i in range(n)
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

    def daemon_pid() -> int:
        return int((work / "pm2-home" / "pm2.pid").read_text())

    try:
        assert client.stdout is not None
        assert json.loads(client.stdout.readline())["ready"]
        res.note = "pm2 6 node API (pm2.start(apps) / pm2.stop('all')), fork mode, autorestart"
        measure_peer(
            res,
            work,
            n,
            rounds,
            lambda: call("start")["s"],
            lambda: call("stop")["s"],
            daemon_pid,
            lambda: call("pids"),
        )
    finally:
        with contextlib.suppress(Exception):
            call("kill")
        client.kill()
    return res


PEERS: dict[str, Callable[[Path, int, int, bool], Result]] = {
    "supervisord": bench_supervisord,
    "circus": bench_circus,
    "pm2": bench_pm2,
    "limit": bench_limit,
}

if __name__ == "__main__":
    sys.exit(main())
