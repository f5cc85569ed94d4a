"""Per-instance figures from the process table, one pass per tick, the way glances does it,
but with a memory: a process is inspected once, when its PID first shows up, to learn which
instance it belongs to (the instance's main process, a process in the session the agent started
it in, or a descendant of either). After that only its counters are read. Children are summed
into their instance: CPU % (of one core), RSS, IO bytes per second, threads.
"""

import time
from typing import NamedTuple

from agent.executor.process import CREATE_TIME_TOLERANCE
from agent.proc_source import ProcSource, Stat, default_source

RESCAN_EVERY = 30  # ticks: re-inspect foreign PIDs now and then (reused PIDs, reparenting)
MAX_DEPTH = 64  # parent-chain walk limit
# Ticks between reads of the process table and of `io` for processes that showed no change.
# A process forks or does IO by running, which changes its stat text nearly always; these
# catch what ran for less than the kernel counts and touched no page.
LIST_EVERY = 5
IO_EVERY = 5

# (instance_id, cpu_percent, rss_bytes, read_bps, write_bps, threads)
Row = tuple[str, float, int, int, int, int]


class Root(NamedTuple):
    """An instance's main process, as the supervisor knows it (a tuple: built every tick)."""

    instance_id: str
    pid: int
    create_time: float


class _Tracked:
    """One process that belongs to an instance, with the counters of the previous tick."""

    __slots__ = (
        "cpu",
        "io",
        "io_ok",
        "newborn",
        "owner",
        "pid",
        "ppid",
        "primed",
        "read",
        "sid",
        "start",
        "stat",
        "write",
    )

    def __init__(self, pid: int, facts: tuple[int, int, float], owner: str, newborn: bool) -> None:
        self.pid = pid
        self.ppid, self.sid, self.start = facts
        self.owner = owner
        self.primed = False  # no counters from an earlier tick yet
        self.newborn = newborn  # not in the previous tick's process list: all its use is new
        self.cpu = 0.0
        self.read = self.write = 0
        self.io_ok = True
        # The source's last tuples: when it hands back the same one, nothing changed.
        self.stat: Stat | None = None
        self.io: tuple[int, int] | None = None


class Sampler:
    """Per-instance rows from the process table; call `sample()` once per tick."""

    def __init__(self, source: ProcSource | None = None) -> None:
        self.source = source or default_source()
        self._tracked: dict[int, _Tracked] = {}
        # Foreign PIDs, remembered with what decided it: (ppid, sid, create_time).
        self._foreign: dict[int, tuple[int, int, float]] = {}
        self._roots: list[Root] = []
        self._by_pid: dict[int, Root] = {}
        self._key: frozenset[tuple[str, int]] = frozenset()
        self._roots_key: frozenset[tuple[str, int]] = frozenset()  # the key owners were decided by
        self._pids: set[int] | None = None  # the previous tick's process list
        self._last: float | None = None
        self._ticks = 0
        self.inspected = 0  # PIDs looked at to decide ownership (tests watch this stay small)
        # Instance id -> when a tick last saw one of its processes change (run, grow, start).
        self.active_at: dict[str, float] = {}

    @property
    def tracked_pids(self) -> dict[int, str]:
        return {pid: t.owner for pid, t in self._tracked.items()}

    def sample(self, roots: list[Root], now: float | None = None) -> list[Row] | None:
        """Rows for instances with live processes; None on the first (priming) tick."""
        now = time.time() if now is None else now
        if roots != self._roots:  # the supervisor's view changed: rebuild what depends on it
            self._roots = list(roots)
            self._by_pid = {r.pid: r for r in roots}
            self._key = frozenset((r.instance_id, r.pid) for r in roots)
        tick = self._ticks
        self._ticks += 1
        last = self._last
        self._last = now
        dt = 1.0 if last is None else now - last
        acc: dict[str, list[float]] = {}
        # The table is read first when the roots changed or a look is due anyway; else only
        # after a followed process changed (a fork shows in its parent), and the processes it
        # finds are read in this same tick.
        first = (
            self._pids is None
            or self._key != self._roots_key
            or tick % RESCAN_EVERY == RESCAN_EVERY - 1
            or tick % LIST_EVERY == 0
        )
        if first:
            self._list(tick)
        stirred = self._collect(list(self._tracked.values()), acc, dt, tick)
        if not first and stirred:
            self._collect(self._list(tick), acc, dt, tick)
        if len(self.active_at) > len(acc):  # instances without a process any more
            self.active_at = {iid: at for iid, at in self.active_at.items() if iid in acc}
        if last is None:
            return None  # counters became the baselines
        dt = max(dt, 1e-3)
        # Zeros (a quiet instance's usual row) skip the arithmetic.
        return [
            (
                iid,
                round(cpu / dt * 100.0, 2) if cpu else 0.0,
                int(rss),
                int(read / dt) if read else 0,
                int(write / dt) if write else 0,
                int(threads),
            )
            for iid, (cpu, rss, read, write, threads) in acc.items()
        ]

    def _list(self, tick: int) -> list["_Tracked"]:
        """Read the process table: forget what ended, decide the owners of new PIDs; returns
        the processes followed from now on."""
        src = self.source
        pids = set(src.pids())
        # Set operations, so that a tick in which nothing started or ended costs no Python loop
        # over the process table.
        for pid in self._tracked.keys() - pids:
            del self._tracked[pid]
            src.forget(pid)
        if tick % RESCAN_EVERY == RESCAN_EVERY - 1:
            self._foreign.clear()
        else:
            for pid in self._foreign.keys() - pids:
                del self._foreign[pid]

        fresh: dict[int, tuple[int, int, float]] = {}
        for pid in pids.difference(self._tracked, self._foreign):
            st = src.inspect(pid)
            self.inspected += 1
            # Unreadable (a zombie, hidden): foreign until the next rescan.
            fresh[pid] = (st[0], st[1], st[2]) if st is not None else (0, 0, 0.0)
        added: list[_Tracked] = []
        key = self._key
        if key != self._roots_key or fresh:
            # New since the last list: born since then. (Comparing create times with the
            # clock would not do: the kernel's boot time is rounded to the second.)
            prev = self._pids
            born = {p for p in fresh if prev is not None and p not in prev}
            added = self._assign(self._by_pid, fresh, born, reassign=key != self._roots_key)
            self._roots_key = key
        self._pids = pids
        return added

    def _assign(
        self,
        by_pid: dict[int, Root],
        fresh: dict[int, tuple[int, int, float]],
        born: set[int],
        reassign: bool,
    ) -> list["_Tracked"]:
        """Decide the owner of new PIDs (and of all known ones when the roots changed); returns
        the processes followed from now on."""
        info = dict(fresh)
        if reassign:
            info.update(self._foreign)
            info.update({p: (t.ppid, t.sid, t.start) for p, t in self._tracked.items()})
        memo: dict[int, str | None] = {}

        def owner(pid: int, depth: int = 0) -> str | None:
            if pid in memo:
                return memo[pid]
            facts = info.get(pid)
            if facts is None:
                t = self._tracked.get(pid)
                return t.owner if t is not None else None
            ppid, sid, start = facts
            found: str | None = None
            root = by_pid.get(pid)
            if root is not None and abs(root.create_time - start) <= CREATE_TIME_TOLERANCE:
                found = root.instance_id
            elif sid in by_pid and sid != pid:
                found = by_pid[sid].instance_id  # the session the agent started the service in
            elif ppid > 1 and depth < MAX_DEPTH:
                found = owner(ppid, depth + 1)
            memo[pid] = found
            return found

        added: list[_Tracked] = []
        for pid, facts in info.items():
            who = owner(pid)
            if who is None:
                self._tracked.pop(pid, None)
                self._foreign[pid] = facts
                self.source.forget(pid)  # its files are not read again
                continue
            self._foreign.pop(pid, None)
            t = self._tracked.get(pid)
            if t is None:
                t = self._tracked[pid] = _Tracked(pid, facts, who, pid in born)
                added.append(t)
            else:
                t.owner = who
        return added

    def _collect(
        self, procs: list["_Tracked"], acc: dict[str, list[float]], dt: float, tick: int
    ) -> bool:
        """Add the processes' use since the last tick into `acc` (per instance); returns
        whether any of them changed or ended."""
        stat, io_of = self.source.stat, self.source.io
        gone: list[int] = []
        active: set[str] = set()
        for t in procs:
            pid = t.pid
            st = stat(pid)
            if st is None:
                gone.append(pid)  # ended, or a zombie
                continue
            # A process born during this tick spent all its CPU and IO inside it; one seen for
            # the first time but older (adopted, re-adopted) starts counting from now.
            counts = t.primed or t.newborn
            cpu_delta = 0.0
            changed = st is not t.stat  # a new tuple: something changed (the same one: nothing)
            if changed:
                if abs(st[2] - t.start) > CREATE_TIME_TOLERANCE:
                    gone.append(pid)  # its PID now belongs to someone else
                    continue
                if counts:
                    cpu_delta = max(st[3] - t.cpu, 0.0)
                t.cpu, t.stat = st[3], st
                active.add(t.owner)
            read_delta = write_delta = 0
            # `io` of a process that did not run is read only now and then (its counters
            # stay exact: what it did shows, later, as a delta of the same totals).
            if t.io_ok and (changed or not t.primed or (tick + pid) % IO_EVERY == 0):
                io = io_of(pid)
                if io is None:
                    t.io_ok = False
                elif io is not t.io:
                    if counts:
                        read_delta, write_delta = max(io[0] - t.read, 0), max(io[1] - t.write, 0)
                    t.read, t.write = io
                    t.io = io
            t.primed = True
            a = acc.get(t.owner)
            if a is None:
                acc[t.owner] = [cpu_delta, st[4], read_delta, write_delta, st[5]]
            else:
                a[0] += cpu_delta
                a[1] += st[4]
                a[2] += read_delta
                a[3] += write_delta
                a[4] += st[5]
        for pid in gone:
            del self._tracked[pid]
            self.source.forget(pid)
        # Stamped after the reads: a change made after any earlier moment shows as later.
        done = time.time()
        for iid in active:
            self.active_at[iid] = done
        return bool(active or gone)
