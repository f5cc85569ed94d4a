"""How late the master's event loop runs: a timer every `PERIOD`, its lateness recorded.

A stalled loop delays every API call, console event and agent message alike, so its lateness
is the master's own health figure: the worst of the last 10 s (a Prometheus gauge), every
sample since start as a histogram, and the recent samples themselves (a ring) for benchmarks
that want exact percentiles over a window. Each sample also notes the CPU time the master
used meanwhile: on a machine short of CPU, lateness with little CPU behind it is waiting for a
core, not the master's own work.
"""

import asyncio
import bisect
import time
from array import array

PERIOD = 0.02  # seconds between samples: fine enough to see a 50 ms stall, cheap when idle
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
KEEP = 1 << 15  # samples kept for `since` (about 11 minutes at PERIOD)


class LoopLag:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._times = array("d", bytes(8 * keep))  # wall clock, so another process can window
        self._lags = array("d", bytes(8 * keep))
        self._cpu = array("d", bytes(8 * keep))  # the process's CPU seconds over the interval
        self.count = 0  # samples taken since start
        self.total = 0.0  # their sum, seconds
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf

    def record(self, at: float, lag: float, cpu: float = 0.0) -> None:
        slot = self.count % self._keep
        self._times[slot] = at
        self._lags[slot] = lag
        self._cpu[slot] = cpu
        self.count += 1
        self.total += lag
        self.buckets[bisect.bisect_left(BUCKETS, lag)] += 1

    def since(self, after: float) -> list[tuple[float, float, float]]:
        """(wall time, lag, CPU seconds over the interval) of the kept samples taken after
        `after`, oldest first."""
        out: list[tuple[float, float, float]] = []
        for n in range(self.count - 1, max(self.count - self._keep, 0) - 1, -1):
            slot = n % self._keep
            if self._times[slot] <= after:
                break
            out.append((self._times[slot], self._lags[slot], self._cpu[slot]))
        out.reverse()
        return out

    def worst(self, seconds: float) -> float:
        """The largest lag of the last `seconds` (0 when none)."""
        return max((lag for _, lag, _ in self.since(time.time() - seconds)), default=0.0)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, samples at or under it) per bucket, +Inf last: Prometheus' `le`."""
        out, running = [], 0
        for bound, n in zip((*BUCKETS, float("inf")), self.buckets, strict=True):
            running += n
            out.append((bound, running))
        return out

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began, cpu = loop.time(), time.process_time()
            await asyncio.sleep(PERIOD)
            lag = max(0.0, loop.time() - began - PERIOD)
            self.record(time.time(), lag, time.process_time() - cpu)
