"""Fleet simulator: many simulated agents over real WebSockets, speaking the real agent protocol.

Each simulated agent enrolls through the API with the join token (`POST /api/v1/agent/enroll`),
connects to `/api/v1/agent/ws` with the node credential it got, says `hello` (with the
instances it runs), sends a `metrics` message (one row per process; a `heartbeat` instead when
metrics are paused) every tick, and answers the master's commands (deploy, start, stop, destroy) the way a real agent
does: a `result`, then `instance_state`. Nothing is mocked on the master's side. Given several
master URLs (comma-separated, as the real agent's `--master`) it fails over as the real agent
does: the next URL on each loss, the agent's jittered backoff and its quick keepalive.

As a library (tests, benches): `enroll()`, `SimAgent`.
As a worker process driving a slice of the fleet (what bench/fleet_bench.py starts; many
connections per process, several processes when one core is not enough):

    .venv/bin/python -m bench.fleet --master http://127.0.0.1:8080 --token <join token> \\
        --agents 500 --first 0 --state-dir /tmp/fleet

With `--master URL1,URL2,URL3` agent number n starts on URL n mod 3 (the list rotated), so the
fleet is spread over the masters, and fails over to the others in the agent's own order (the
others shuffled by node id: a lost master's agents spread over the rest). It enrolls its agents (or reuses `<state-dir>/creds-<first>.json`), prints
`{"event": "enrolled", "nodes": [...]}`, then obeys JSON lines on stdin:
`{"cmd": "connect", "instances": {node_id: [instance ids]}}`, `{"cmd": "burn", "instance_id":
...}` (that process reports 90 % CPU from its agent's next tick on; the answer carries that tick
as `breach_at`), `{"cmd": "pause"}` (no more metrics), `{"cmd": "stats"}`, `{"cmd": "executed"}`
(every start and stop the agents received since the last ask), `{"cmd": "stop"}`.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.link import FAILOVER_PING, STABLE_AFTER, Redials, backoff_delays, failover_order
from agent.liveness import Liveness, pong_or_stopped
from agent.wsclient import KEEPALIVE_LOST

BASE_CPU = 2.0
BURN_CPU = 90.0


def ws_url(master: str) -> str:
    return master.replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + (
        "/api/v1/agent/ws"
    )


def host_facts(hostname: str) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "ip": "10.0.0.1",
        "os": "linux",
        "arch": "x86_64",
        "cpu_count": 4,
        "mem_total": 8 << 30,
        "disk_total": 100 << 30,
        "platform": "simulated",
    }


async def enroll(
    client: httpx.AsyncClient, master: str, join_token: str, hostname: str
) -> tuple[str, str]:
    """The real enrolment call; returns (node_id, node_secret)."""
    r = await client.post(
        master.rstrip("/") + "/api/v1/agent/enroll",
        json={"join_token": join_token, "host": host_facts(hostname)},
    )
    r.raise_for_status()
    body = r.json()
    return body["node_id"], body["node_secret"]


KEEPALIVE_ENV = "GDOS_BENCH_AGENT_KEEPALIVE"


def agent_keepalive() -> tuple[float, float, str]:
    """The agent's failover keepalive: ping interval, pong deadline, and how a hung master's
    agents redial: "round" (the others at once, one round: `Redials`), "now" (the next at once,
    then the backoff) or "backoff". `GDOS_BENCH_AGENT_KEEPALIVE` ("0.5,3.5,now") replays
    another version's for before/after runs."""
    given = os.environ.get(KEEPALIVE_ENV, "")
    if not given:
        return (*FAILOVER_PING, "round")
    interval, deadline, redial = given.split(",")
    return float(interval), float(deadline), redial


def keepalive_lost(exc: ConnectionClosed) -> bool:
    """The link ended because this side's keepalive gave up (the library's own close)."""
    return exc.rcvd is None and exc.sent is not None and exc.sent.reason == KEEPALIVE_LOST


@dataclass
class SimInstance:
    id: str
    state: str = "running"
    pid: int = 0
    rss: int = 48 << 20
    burn_from: float | None = None  # samples whose window starts at or after this burn

    def cpu(self, tick: float, interval: float) -> float:
        if self.burn_from is not None and tick - interval >= self.burn_from - 1e-3:
            return BURN_CPU
        return BASE_CPU + random.random()


@dataclass(frozen=True)
class Executed:
    """A start or stop the simulated agent received: its command id, instance, wall time and
    the master URL it came through."""

    command_id: str
    kind: str
    instance_id: str
    at: float
    via: str


class SimAgent:
    """`master`: one URL, or several comma-separated to fail over between them."""

    def __init__(
        self,
        master: str,
        node_id: str,
        secret: str,
        hostname: str,
        instances: list[str] | None = None,
        interval: float = 1.0,
        phase: float | None = None,
        stopped: list[str] | None = None,
    ) -> None:
        self.urls = list(failover_order(tuple(master.split(",")), node_id))  # as the agent
        self.master = self.urls[0]  # the URL it dials now
        self.node_id = node_id
        self.secret = secret
        self.hostname = hostname
        self.instances: dict[str, SimInstance] = {
            iid: SimInstance(iid, pid=10_000 + n) for n, iid in enumerate(instances or [])
        }
        for iid in stopped or []:
            self.instances[iid] = SimInstance(iid, state="stopped")
        self.batches_received: list[float] = []  # wall time each `batch` command arrived
        self.interval = interval
        # Agents start at different moments in reality: spread their ticks over the interval.
        self.phase = random.random() if phase is None else phase
        self.send_metrics = True
        self.metrics_sent = 0
        self.rows_sent = 0
        self.heartbeats_sent = 0
        self.commands = 0
        self.executed: list[Executed] = []
        self.connected = asyncio.Event()
        self.unexpected = 0  # connections ended by an error the protocol does not name
        # The last lost connection: [lost at, first retry at, attempts, greeted again at].
        self.reconnect: list[float] | None = None
        self.ws: ClientConnection | None = None
        self.timeline: list[
            tuple[float, str, str]
        ] = []  # (wall time, "dial", "hello" or "lost", URL)
        self._stop = False

    # -- ticks -----------------------------------------------------------------------------

    def next_tick(self, after: float | None = None) -> float:
        after = time.time() if after is None else after
        step = self.interval
        offset = self.phase * step
        return math.floor((after - offset) / step + 1) * step + offset

    def metrics_text(self, ts: float) -> str:
        rows = [
            [i.id, round(i.cpu(ts, self.interval), 2), i.rss, 0, 4096, 4]
            for i in self.instances.values()
            if i.state == "running"
        ]
        node = [35.0 + random.random(), 41.0, 63.0, 120_000, 80_000, 0.7]
        body = {
            "type": "metrics",
            "ts": ts,
            "interval": self.interval,
            "node": node,
            "instances": rows,
        }
        self.rows_sent += len(rows)
        return json.dumps(body, separators=(",", ":"))

    def heartbeat_text(self, ts: float) -> str:
        load = {"cpu_percent": 35.0, "mem_percent": 41.0, "disk_percent": 63.0, "load1": 0.7}
        return json.dumps({"type": "heartbeat", "ts": ts, "load": load}, separators=(",", ":"))

    async def _ticker(self, ws: ClientConnection) -> None:
        while True:
            tick = self.next_tick()
            await asyncio.sleep(max(0.0, tick - time.time()))
            # Like the real agent: metrics carry the node's load and prove liveness; a
            # heartbeat goes out only when no metrics do.
            if self.send_metrics:
                await ws.send(self.metrics_text(time.time()))
                self.metrics_sent += 1
            else:
                await ws.send(self.heartbeat_text(tick))
                self.heartbeats_sent += 1

    # -- the connection ------------------------------------------------------------------------

    def hello_text(self) -> str:
        reports = [
            {"instance_id": i.id, "state": i.state, "pid": i.pid or None, "restarts": 0}
            for i in self.instances.values()
        ]
        return json.dumps(
            {
                "type": "hello",
                "agent_version": "0.1.0-sim",
                "host": host_facts(self.hostname),
                "instances": reports,
            }
        )

    async def run(self, reconnect: bool = True) -> None:
        failover = len(self.urls) > 1
        # With one master a slow one is waited for; with several, the real agent's keepalive.
        interval, deadline, redial = agent_keepalive()
        ping_interval, ping_timeout = (interval, deadline) if failover else (20.0, 60.0)
        redials = Redials(len(self.urls))
        delays = backoff_delays(len(self.urls))  # replaying an older agent's redial
        while not self._stop:
            began = time.monotonic()
            at_once = False
            if self.reconnect is not None:
                self.reconnect[1] = self.reconnect[1] or time.time()
                self.reconnect[2] += 1
            self.timeline.append((time.time(), "dial", self.master))
            try:
                async with connect(
                    ws_url(self.master),
                    additional_headers={"Authorization": f"Bearer {self.secret}"},
                    open_timeout=5 if failover else 60,
                    # With several masters, the real agent's keepalive (`_keepalive`).
                    ping_interval=None if failover else ping_interval,
                    ping_timeout=ping_timeout,
                    # The real agent drops a link whose pong is late at once, with no close
                    # handshake to wait for from a master that cannot answer.
                    close_timeout=0.1 if failover else 10,
                    max_size=8 << 20,
                    proxy=None,
                    compression=None,  # as the real agent (agent.wsclient offers no deflate)
                ) as ws:
                    await ws.send(self.hello_text())
                    if self.reconnect is not None and not self.reconnect[3]:
                        self.reconnect[3] = time.time()
                    self.timeline.append((time.time(), "hello", self.master))
                    self.ws = ws
                    self.connected.set()
                    ticker = asyncio.create_task(self._ticker(ws))
                    keeper = (
                        asyncio.create_task(self._keepalive(ws, interval, deadline))
                        if failover
                        else None
                    )
                    try:
                        async for raw in ws:
                            await self._handle(ws, json.loads(raw))
                    finally:
                        for task in (ticker, keeper):
                            if task is not None:
                                task.cancel()
                                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                                    await task
            except ConnectionClosed as exc:
                at_once = keepalive_lost(exc)
            except (OSError, InvalidStatus, TimeoutError):
                pass
            except Exception as exc:  # as the real agent: one lost connection, never the agent
                if not reconnect:
                    raise
                self.unexpected += 1
                print(f"{self.hostname}: connection failed unexpectedly: {exc!r}", file=sys.stderr)
            finally:
                if self.ws is not None:
                    self.reconnect = [time.time(), 0.0, 0, 0.0]
                    self.timeline.append((time.time(), "lost", self.master))
                self.ws = None
                self.connected.clear()
            if not reconnect:
                return
            if not failover:
                await asyncio.sleep(1.0 + random.random())
                continue
            self.master = self.urls[(self.urls.index(self.master) + 1) % len(self.urls)]
            lived = time.monotonic() - began
            if redial == "round":
                await asyncio.sleep(redials.after(lived, at_once))
                continue
            if lived > STABLE_AFTER:
                delays = backoff_delays(len(self.urls))
            now = at_once and redial == "now" and lived > STABLE_AFTER
            await asyncio.sleep(0.0 if now else next(delays))

    def stop(self) -> None:
        self._stop = True

    async def _keepalive(self, ws: ClientConnection, interval: float, deadline: float) -> None:
        """The real agent's (agent.wsclient): a ping every `interval`; a pong later than
        `deadline`, or a master whose liveness probe goes unanswered, fails the link as the
        library's keepalive would (so `keepalive_lost` holds)."""
        probe = await Liveness.open(ws.transport.get_extra_info("peername"))
        try:
            while True:
                await asyncio.sleep(interval)
                if probe is not None:
                    probe.prove()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline):
                        if await pong_or_stopped(await ws.ping(), probe, self.master):
                            continue
                async with ws.send_context():
                    ws.protocol.fail(1011, KEEPALIVE_LOST)
                return
        finally:
            if probe is not None:
                probe.close()

    async def _report(self, ws: ClientConnection, inst: SimInstance) -> None:
        body = {
            "type": "instance_state",
            "instance_id": inst.id,
            "state": inst.state,
            "pid": inst.pid if inst.state == "running" else None,
            "restarts": 0,
        }
        await ws.send(json.dumps(body))

    async def _handle(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "config":
            if msg.get("metrics_interval"):
                self.interval = float(msg["metrics_interval"])
            return
        self.commands += 1
        if kind == "batch":
            await self._batch(ws, msg)
            return
        inst: SimInstance | None = None
        if kind == "deploy":
            iid = msg["spec"]["instance_id"]
            inst = self.instances.setdefault(iid, SimInstance(iid, state="stopped"))
        elif kind in ("start", "stop", "destroy"):
            inst = self.instances.get(msg["instance_id"])
            if kind != "destroy":
                self.executed.append(
                    Executed(
                        str(msg.get("id", "")), kind, msg["instance_id"], time.time(), self.master
                    )
                )
            if inst is not None and kind == "start":
                inst.state, inst.pid = "running", 20_000 + len(self.instances)
            elif inst is not None and kind == "stop":
                inst.state, inst.pid = "stopped", 0
            elif kind == "destroy":
                self.instances.pop(msg["instance_id"], None)
                inst = None
        await ws.send(json.dumps({"type": "result", "reply_to": msg.get("id", ""), "ok": True}))
        if inst is not None:
            await self._report(ws, inst)

    async def _batch(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        """Like the agent: every instance at once, one result, then one `instance_states`."""
        self.batches_received.append(time.time())
        start = msg["action"] == "start"
        results: dict[str, dict[str, str] | None] = {}
        reports = []
        for iid in msg["instance_ids"]:
            self.executed.append(Executed(msg["id"], msg["action"], iid, time.time(), self.master))
            inst = self.instances.get(iid)
            if inst is None:
                results[iid] = {"code": "not_found", "message": f"no instance {iid}"}
                continue
            inst.state = "running" if start else "stopped"
            inst.pid = 30_000 + len(self.batches_received) if start else 0
            results[iid] = None
            reports.append(
                {"instance_id": iid, "state": inst.state, "pid": inst.pid or None, "restarts": 0}
            )
        ok = not any(results.values())
        result = {"type": "result", "reply_to": msg["id"], "ok": ok, "data": {"results": results}}
        await ws.send(json.dumps(result))
        if reports:
            await ws.send(json.dumps({"type": "instance_states", "reports": reports}))


async def stop_agents(agents: Iterable[SimAgent], tasks: Sequence[asyncio.Task[None]]) -> None:
    for agent in agents:
        agent.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def connected_agents(
    master: str, join_token: str, hostnames: Sequence[str], **kwargs: Any
) -> AsyncIterator[list[SimAgent]]:
    """Enrol one simulated agent per hostname and connect them all (no reconnects); tests use
    this to speak the real protocol to a real master. Stopped when the block ends."""
    async with httpx.AsyncClient() as client:
        creds = [await enroll(client, master, join_token, h) for h in hostnames]
    agents = [
        SimAgent(master, node, secret, h, **kwargs)
        for (node, secret), h in zip(creds, hostnames, strict=True)
    ]
    tasks = [asyncio.create_task(a.run(reconnect=False)) for a in agents]
    try:
        await asyncio.gather(*(a.connected.wait() for a in agents))
        yield agents
    finally:
        await stop_agents(agents, tasks)


# -- worker process ------------------------------------------------------------------------------


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def enroll_many(
    master: str, token: str, first: int, count: int, creds: Path
) -> list[tuple[str, str, str]]:
    if creds.exists():
        return [(x[0], x[1], x[2]) for x in json.loads(creds.read_text())]
    sem = asyncio.Semaphore(16)
    out: list[tuple[str, str, str]] = []
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(n: int) -> None:
            hostname = f"sim-{n:05d}"
            async with sem:
                node_id, secret = await enroll(client, master, token, hostname)
            out.append((node_id, secret, hostname))

        await asyncio.gather(*(one(n) for n in range(first, first + count)))
    creds.write_text(json.dumps(out))
    return out


async def worker(args: argparse.Namespace) -> None:
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    urls = args.master.split(",")
    creds = await enroll_many(
        urls[0], args.token, args.first, args.agents, state / f"creds-{args.first}.json"
    )
    emit({"event": "enrolled", "nodes": [c[0] for c in creds]})
    agents: dict[str, SimAgent] = {}
    by_instance: dict[str, SimAgent] = {}
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        what = cmd.get("cmd")
        if what == "connect":
            instances = cmd.get("instances", {})
            stopped = cmd.get("stopped", {})
            for n, (node_id, secret, hostname) in enumerate(creds, start=args.first):
                at = n % len(urls)  # spread over the masters, each agent given them all
                agent = SimAgent(
                    ",".join(urls[at:] + urls[:at]),
                    node_id,
                    secret,
                    hostname,
                    instances.get(node_id, []),
                    stopped=stopped.get(node_id, []),
                )
                agents[node_id] = agent
                for iid in agent.instances:
                    by_instance[iid] = agent
            ramp = float(cmd.get("ramp_per_second", 25))
            for n, agent in enumerate(agents.values()):
                tasks.append(asyncio.create_task(agent.run()))
                if ramp and n % 20 == 19:
                    await asyncio.sleep(20 / ramp)
            await asyncio.gather(*(a.connected.wait() for a in agents.values()))
            emit({"event": "connected", "count": len(agents)})
        elif what == "burn":
            agent = by_instance[cmd["instance_id"]]
            breach = agent.next_tick()
            agent.instances[cmd["instance_id"]].burn_from = breach
            emit({"event": "burn", "instance_id": cmd["instance_id"], "breach_at": breach})
        elif what == "calm":
            agent = by_instance[cmd["instance_id"]]
            agent.instances[cmd["instance_id"]].burn_from = None
        elif what == "pause":
            for agent in agents.values():
                agent.send_metrics = False
            emit({"event": "paused"})
        elif what == "stats":
            emit(
                {
                    "event": "stats",
                    "agents": len(agents),
                    "connected": sum(a.connected.is_set() for a in agents.values()),
                    "metrics_messages": sum(a.metrics_sent for a in agents.values()),
                    "rows": sum(a.rows_sent for a in agents.values()),
                    "heartbeats": sum(a.heartbeats_sent for a in agents.values()),
                    "unexpected_errors": sum(a.unexpected for a in agents.values()),
                }
            )
        elif what == "executed":  # every start/stop received since the last ask; then forget
            done = [[a.node_id, *astuple(x)] for a in agents.values() for x in a.executed]
            for agent in agents.values():
                agent.executed.clear()
            emit({"event": "executed", "commands": done})
        elif what == "batches":  # when each agent received its `batch` commands; then forget
            received = [t for a in agents.values() for t in a.batches_received]
            for agent in agents.values():
                agent.batches_received.clear()
            emit({"event": "batches", "received": received})
        elif what == "reconnects":  # each agent's last lost connection; then forget
            lost = [a.reconnect for a in agents.values() if a.reconnect is not None]
            for agent in agents.values():
                agent.reconnect = None
            emit({"event": "reconnects", "agents": lost})
        elif what == "timeline":  # each agent's hellos and lost links since the last ask
            lines = {a.node_id: a.timeline for a in agents.values() if a.timeline}
            emit({"event": "timeline", "nodes": lines})
            for agent in agents.values():
                agent.timeline = []
        elif what == "stop":
            break
    await stop_agents(agents.values(), tasks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--master", required=True)
    p.add_argument("--token", required=True, help="join token")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--first", type=int, default=0, help="index of this worker's first agent")
    p.add_argument("--state-dir", default="/tmp/gdos-fleet")
    # A line per agent leaving a stopped master is the real agent's log, noise for a bench.
    logging.getLogger("agent.liveness").setLevel(logging.ERROR)
    asyncio.run(worker(p.parse_args()))


if __name__ == "__main__":
    main()
