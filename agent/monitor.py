"""Live figures for every instance and for the node, sampled once a tick, sent as one message."""

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import psutil

from agent.executor.states import ACTIVE
from agent.executor.supervisor import Supervisor
from agent.sampler import Root, Row, Sampler
from protocol.messages import Load

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()

# (cpu_percent, mem_percent, disk_percent, net_rx_bps, net_tx_bps, load1)
NodeRow = tuple[float, float, float, int, int, float]


class NodeSampler:
    """CPU, memory, disk, network rates (loopback excluded) and load of this host."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = str(work_dir)
        psutil.cpu_percent(interval=None)  # primes the CPU baseline
        self._net = self._net_bytes()
        self._at = time.monotonic()

    @staticmethod
    def _net_bytes() -> tuple[int, int]:
        rx = tx = 0
        for name, c in psutil.net_io_counters(pernic=True).items():
            if name != "lo" and not name.startswith("lo"):
                rx += c.bytes_recv
                tx += c.bytes_sent
        return rx, tx

    def sample(self) -> NodeRow:
        now = time.monotonic()
        rx, tx = self._net_bytes()
        dt = max(now - self._at, 1e-3)
        rx_bps, tx_bps = max(rx - self._net[0], 0) / dt, max(tx - self._net[1], 0) / dt
        self._net, self._at = (rx, tx), now
        try:
            load1 = os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows
            load1 = 0.0
        try:
            disk = psutil.disk_usage(self.work_dir).percent
        except OSError:
            disk = 0.0
        return (
            psutil.cpu_percent(interval=None),
            psutil.virtual_memory().percent,
            disk,
            int(rx_bps),
            int(tx_bps),
            round(load1, 2),
        )


class Roots:
    """The supervisor's running main processes, once a tick. A Root is built again only when its
    instance's process changed, so that an unchanged table compares equal at once (the same
    objects) and a tick builds nothing."""

    def __init__(self) -> None:
        self._made: dict[str, Root] = {}

    def of(self, supervisor: Supervisor) -> list[Root]:
        made = self._made
        out: list[Root] = []
        for iid, m in supervisor.instances.items():
            pid, created = m.pid, m.create_time
            if pid is None or created is None or m.state not in ACTIVE:
                continue
            r = made.get(iid)
            if r is None or r.pid != pid or r.create_time != created:
                r = made[iid] = Root(iid, pid, created)
            out.append(r)
        if len(made) > len(out):  # instances gone or stopped: forget their roots
            self._made = {r.instance_id: r for r in out}
        return out


def encode(ts: float, interval: float, node: NodeRow | None, rows: list[Row]) -> str:
    """The `metrics` message (protocol.messages.Metrics), built without a model per row and
    encoded by msgspec (several times faster than json at a thousand rows)."""
    body = {
        "type": "metrics",
        "ts": round(ts, 3),
        "interval": interval,
        "node": node,
        "instances": rows,
    }
    return _ENCODER.encode(body).decode()


class Monitor:
    """Samples every `interval` seconds (0 = off) and hands one `metrics` text to `send`."""

    def __init__(
        self,
        supervisor: Supervisor,
        work_dir: Path,
        send: Callable[[str], Awaitable[None]],
        interval: float = 1.0,
        sampler: Sampler | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.send = send
        self.interval = interval
        self.sampler = sampler or Sampler()
        self.node = NodeSampler(work_dir)
        self.latest_load: Load | None = None
        self.sampled_at = 0.0  # wall time of the last tick that read the processes
        self._changed = asyncio.Event()
        self._roots = Roots()

    def set_interval(self, interval: float) -> None:
        if interval != self.interval:
            log.info("metrics every %.2f s (0 = off)", interval)
            self.interval = interval
            self._changed.set()

    def load(self) -> Load | None:
        """The node's latest figures, for heartbeats (so psutil's CPU baseline has one reader)."""
        return self.latest_load if self.interval > 0 else None

    def active_since(self, instance_id: str, since: float) -> bool:
        """Whether a process of the instance may have run since `since` (wall time): false only
        when ticks since then saw none of them change. True whenever sampling is off or late."""
        if self.interval <= 0 or time.time() - self.sampled_at > 2 * self.interval + 1:
            return True
        return self.sampler.active_at.get(instance_id, 0.0) >= since

    def _tick(self, roots: list[Root]) -> tuple[float, NodeRow, list[Row] | None]:
        now = time.time()
        rows = self.sampler.sample(roots, now)
        self.sampled_at = time.time()
        node = self.node.sample()
        return now, node, rows

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if self.interval <= 0:
                self._changed.clear()
                await self._changed.wait()
                next_at = loop.time()
                continue
            try:
                ts, node, rows = await asyncio.to_thread(
                    self._tick, self._roots.of(self.supervisor)
                )
            except OSError as exc:  # /proc unreadable for a moment: skip this tick, not the loop
                log.warning("sampling failed: %s", exc)
                rows = None
                node = self.node.sample()
                ts = time.time()
            cpu, mem, disk, _, _, load1 = node
            self.latest_load = Load(
                cpu_percent=cpu, mem_percent=mem, disk_percent=disk, load1=load1
            )
            if rows is not None:
                await self.send(encode(ts, self.interval, node, rows))
            # Fixed schedule: a slow tick does not push the next ones later.
            next_at += self.interval
            delay = next_at - loop.time()
            if delay < 0:
                next_at = loop.time()
                delay = 0
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), delay)
                next_at = loop.time()  # the interval changed: restart the schedule
            except TimeoutError:
                pass
