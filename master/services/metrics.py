"""Live metrics in memory: bounded, compact rings per series, a fixed ceiling whatever the fleet.

Each series (one node or one instance) holds two rings (`metrics_ring.Ring`), numbers only,
never a Python object per sample:
- recent: one row per second for `recent_seconds` (10 minutes by default);
- history: one average per minute for `history_minutes` (2 hours by default).
The newest block of each ring is raw float32; older blocks are encoded at the precision the API
shows (hundredths for percents and load, integers for bytes, rates and threads), mostly a few
bits per constant column and a byte per changing figure. Missing rows are skipped when read.
The number of series is capped (`max_series`); a new series beyond the cap evicts the one
written least recently (an instance's recency counts from its newest block, not its newest row). So memory is at most `max_series x Series.ceiling`, and in practice a
tenth of it.

Ingest is O(samples) with no database access: ownership checks come from the in-memory
`Directory`, and `metrics:<id>` events are built only when somebody subscribed to that key.
This is the in-process implementation of the metrics store; a multi-master deployment would
shard series by node behind the same `ingest`/`query` calls.
"""

import math
import struct
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from master.hub import Hub
from master.services.directory import Directory
from master.services.metrics_ring import Ring, Spec
from protocol.messages import INSTANCE_FIELDS, NODE_FIELDS, Metrics
from protocol.rest import iso

NAN = math.nan
NODE_WIDTH = len(NODE_FIELDS)
INSTANCE_WIDTH = len(INSTANCE_FIELDS)
ROW_BYTES = 4 * INSTANCE_WIDTH  # one instance row in a float32 block
MAX_SKEW = 30.0  # seconds; an agent clock further off than this is replaced by the master's
# A node stamped by the master's clock keeps that until its own is this close again: a clock (or a
# backlog) near MAX_SKEW would otherwise alternate the two, and every sample stamped by its own,
# older clock after one stamped "now" lands behind the newest row (a costly rewrite of the block).
TRUST_AGAIN = MAX_SKEW / 2
FRESH_FOR = 120.0  # seconds; older latest values are not exported to Prometheus

SampleHook = Callable[[str, float, float, list[tuple[Any, ...]]], None]
# An instance row's figures written as float32 straight into the open block (no array per row);
# native packing casts as an array does (beyond float32: infinity, not an error).
_pack_instance = struct.Struct(f"{INSTANCE_WIDTH}f").pack_into


FINE_BLOCK = 20  # seconds per encoded block of the recent ring (divides a minute)
COARSE_BLOCK = 10  # minutes per encoded block of the history ring
ROUNDED = frozenset(("cpu_percent", "mem_percent", "disk_percent", "load1"))  # shown to 0.01


def scales_of(fields: Sequence[str]) -> tuple[int, ...]:
    """What the API shows of each field, hence what older rows keep: hundredths or integers."""
    return tuple(100 if name in ROUNDED else 0 for name in fields)


SCALES = {NODE_WIDTH: scales_of(NODE_FIELDS), INSTANCE_WIDTH: scales_of(INSTANCE_FIELDS)}


@lru_cache(maxsize=64)
def _specs(
    width: int, fine_slots: int, coarse_slots: int, scales: tuple[int, ...]
) -> tuple[Spec, Spec]:
    return Spec(width, scales, FINE_BLOCK, fine_slots), Spec(
        width, scales, COARSE_BLOCK, coarse_slots
    )


class Series(Ring):
    """Per-second rows (this ring: `recent_seconds`) and per-minute averages (`coarse`).

    A sample costs one slice assignment into the open block. Closing a block adds its columns
    to the minute's sums (float64, in time order as a plain sum would), so a minute's average
    is computed from the float32 samples as they came. Each series' minutes start at its own
    second (`phase`), so a fleet's series do not all close a block in the same second.
    """

    __slots__ = ("acc", "coarse", "phase", "width")

    def __init__(
        self,
        width: int,
        fine_slots: int,
        coarse_slots: int,
        phase: int = 0,
        scales: tuple[int, ...] | None = None,
    ) -> None:
        fine, coarse = _specs(
            width, max(fine_slots, 60), max(coarse_slots, 1), scales or (100,) * width
        )
        super().__init__(fine)
        self.coarse = Ring(coarse)
        self.width = width
        self.phase = phase % 60
        self.acc = array("d", bytes(8 * width + 8))  # the open minute's sums, then its rows

    @staticmethod
    def ceiling(width: int, fine_slots: int, coarse_slots: int) -> int:
        fine, coarse = _specs(width, max(fine_slots, 60), max(coarse_slots, 1), (0,) * width)
        return fine.ceiling + coarse.ceiling + 8 * width + 8

    def nbytes(self) -> int:
        return Ring.nbytes(self) + self.coarse.nbytes() + 8 * self.width + 8

    def add(self, sec: int, values: Sequence[Any], offset: int = 0) -> bool:
        """Store `values[offset:offset+width]` for second `sec`; False if too old to keep.
        A second sample for the same second (intervals under 1 s) replaces the first."""
        row = sec - self.phase
        if self.last < row < self.end:
            w = self.width
            base = (row - self.start) * w
            self.raw[base : base + w] = array("f", values[offset : offset + w])
            self.last = row
            return True
        return self._add_slow(row, array("f", values[offset : offset + self.width]))

    def _add_slow(self, row: int, values: array) -> bool:  # type: ignore[type-arg]
        last, w = self.last, self.width
        if row <= last:
            if row <= last - self.spec.window:
                return False
            if row >= self.start:
                base = (row - self.start) * w
                self.raw[base : base + w] = values
                return True
            old = self.rewrite(row, values)
            if row // 60 == last // 60:  # the open minute's sums take the late row in
                for j in range(w):
                    self.acc[j] += values[j] - (old[j] if old is not None else 0.0)
                self.acc[w] += old is None
            return True
        opened = self.end > self.start
        self.roll(row, self.acc)
        if opened and row // 60 != last // 60:
            self._close_minute(last // 60)
        base = (row - self.start) * w
        self.raw[base : base + w] = values
        self.last = row
        return True

    def _close_minute(self, minute: int) -> None:
        acc, w = self.acc, self.width
        n = acc[w]
        if n:
            self.coarse.put_row(minute, array("f", [acc[j] / n for j in range(w)]))
        self.acc = array("d", bytes(8 * w + 8))

    def latest(self) -> tuple[int, list[float]] | None:
        if self.end == self.start:
            return None
        base = (self.last - self.start) * self.width
        return self.last + self.phase, list(self.raw[base : base + self.width])

    def read(self, since: int) -> list[tuple[int, list[float]]]:
        """Samples from second `since` on: minute averages before the recent window, then
        every second of the recent window that has a sample. Oldest first."""
        if self.end == self.start:
            return []
        out: list[tuple[int, list[float]]] = []
        ph, coarse = self.phase, self.coarse
        since_row = since - ph
        fine_start = self.last - self.spec.window + 1
        if since_row < fine_start and coarse.end > coarse.start:
            first = max(since_row // 60, coarse.last - coarse.spec.window + 1)
            # Whole minutes before the recent window (the one it starts in is read per second).
            final = min(coarse.last, fine_start // 60 - 1)
            out.extend((int(r[0]) * 60 + ph, r[1:]) for r in coarse.rows(first, final))
        rows = self.rows(max(since_row, fine_start, -ph), self.last)
        out.extend((int(r[0]) + ph, r[1:]) for r in rows)
        return out


class MetricsStore:
    def __init__(
        self, recent_seconds: int = 600, history_minutes: int = 120, max_series: int = 25_000
    ) -> None:
        self.fine_slots = max(int(recent_seconds), 60)
        self.coarse_slots = max(int(history_minutes), 1)
        self.max_series = max(int(max_series), 1)
        # Least recently written first: eviction pops from the front.
        self.series_map: OrderedDict[str, Series] = OrderedDict()
        self.evicted = 0
        self.dropped_old = 0
        self.removed = 0  # series evicted or dropped so far: what callers' references go stale by

    def __len__(self) -> int:
        return len(self.series_map)

    def ceiling_bytes(self) -> int:
        """The most the sample buffers can take, with every series a node (the wider kind)
        and every block stored raw (figures that do not compress at all)."""
        return self.max_series * Series.ceiling(NODE_WIDTH, self.fine_slots, self.coarse_slots)

    def allocated_bytes(self) -> int:
        series = list(self.series_map.values())  # a snapshot: scrapes run in a worker thread
        return sum(s.nbytes() for s in series)

    def add(self, key: str, width: int, sec: int, values: Sequence[Any], offset: int = 0) -> None:
        series = self.series_map.get(key)
        if series is None:
            series = self.create(key, width)
        else:
            self.series_map.move_to_end(key)
        if not series.add(sec, values, offset):
            self.dropped_old += 1

    def create(self, key: str, width: int) -> Series:
        """A new, empty series for `key` (the stalest one evicted at the cap)."""
        if len(self.series_map) >= self.max_series:
            self.series_map.popitem(last=False)
            self.evicted += 1
            self.removed += 1
        series = self.series_map[key] = Series(
            width, self.fine_slots, self.coarse_slots, hash(key), SCALES.get(width)
        )
        return series

    def get(self, key: str) -> Series | None:
        return self.series_map.get(key)

    def drop(self, key: str) -> None:
        if self.series_map.pop(key, None) is not None:
            self.removed += 1

    def items(self) -> list[tuple[str, Series]]:
        return list(self.series_map.items())  # a snapshot: safe to walk while ingest goes on


def node_key(node_id: str) -> str:
    return "n:" + node_id


def instance_key(instance_id: str) -> str:
    return "i:" + instance_id


def _sample(fields: Sequence[str], ts: float, values: Sequence[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": iso(ts)}
    for name, value in zip(fields, values, strict=True):
        out[name] = round(value, 2) if name in ROUNDED else int(value)
    return out


class _Rows:
    """A node's instance rows as its last message had them: ids and series, in row order."""

    __slots__ = ("ids", "removed", "series")

    def __init__(self, ids: tuple[str, ...], series: tuple[Series, ...], removed: int) -> None:
        self.ids, self.series, self.removed = ids, series, removed


_first = itemgetter(0)


class MetricsService:
    """Ingest from agents, queries for the API, live `metrics:<id>` events, health counters."""

    def __init__(self, store: MetricsStore, directory: Directory, hub: Hub) -> None:
        self.store = store
        self.directory = directory
        self.hub = hub
        self.on_samples: SampleHook | None = None  # the alert engine
        self.messages = 0
        self.samples = 0
        self.rejected = 0  # rows for instances the sending node does not run
        self.rate = 0.0  # samples per second over the last few seconds
        self._rate_at = time.monotonic()
        self._rate_base = 0
        self._master_clock: set[str] = set()  # nodes whose samples the master's clock stamps
        self._rows: dict[str, _Rows] = {}  # per node: its last message's rows' series
        # The ids in the hub's `metrics:<id>` keys, derived once per change of its key set.
        self._wanted_keys: frozenset[str] = frozenset()
        self._wanted_ids: frozenset[str] = frozenset()
        hub.listen("instance", self._on_gone(instance_key))
        hub.listen("node", self._on_gone(node_key))
        hub.listen("node", self._on_node)

    def _on_node(self, data: dict[str, Any]) -> None:
        """A node no longer online here (or removed) drops the series kept for its rows: a
        node that sends no more keeps no evicted series alive. Found again at its next message."""
        node_id = data.get("id")
        if isinstance(node_id, str) and data.get("status") != "online":
            self._rows.pop(node_id, None)

    def _on_gone(self, key_of: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
        """A destroyed instance or a removed node: its series go at once, not at eviction."""

        def listener(data: dict[str, Any]) -> None:
            if data.get("deleted") and isinstance(data.get("id"), str):
                self.store.drop(key_of(data["id"]))
                self._master_clock.discard(data["id"])
                self._rows.pop(data["id"], None)

        return listener

    def ingest(self, node_id: str, msg: Metrics) -> None:
        ts = self._stamp(node_id, msg.ts)
        sec = int(ts)
        store = self.store
        count = 0
        if msg.node is not None:
            store.add("n:" + node_id, NODE_WIDTH, sec, msg.node)
            count += 1
        rows = msg.instances
        ids = tuple(map(_first, rows))
        owned = self.directory.owned_by(node_id)
        if owned.issuperset(ids):
            accepted = rows
        else:
            accepted = [row for row in rows if row[0] in owned]
            ids = tuple(map(_first, accepted))
            self.rejected += len(rows) - len(accepted)
        for series, row in zip(self._series_of(node_id, ids), accepted, strict=True):
            at = sec - series.phase  # MetricsStore.add and Series.add, inlined: the hottest loop
            if series.last < at < series.end:  # within the open block: one write in place
                _, cpu, rss, read, write, threads = row
                offset = (at - series.start) * ROW_BYTES
                _pack_instance(series.raw, offset, cpu, rss, read, write, threads)
                series.last = at
                continue
            store.series_map.move_to_end("i:" + row[0])  # recency is kept per block, not per row
            if not series.add(sec, row, 1):
                store.dropped_old += 1
        count += len(accepted)
        self.messages += 1
        self.samples += count
        self._update_rate()
        wanted = self.hub.wanted_keys()
        if wanted:
            self._publish(node_id, ts, msg, accepted, wanted)
        if self.on_samples is not None and accepted:
            self.on_samples(node_id, ts, msg.interval, accepted)

    def _series_of(self, node_id: str, ids: tuple[str, ...]) -> tuple[Series, ...]:
        """The series of `ids`, in their order. An agent sends its rows in the same order every
        time, so the list found for a node's last message is kept and reused while its ids
        are the same and no series was removed since: no key built or looked up per row."""
        store = self.store
        held = self._rows.get(node_id)
        if held is not None and held.removed == store.removed and held.ids == ids:
            return held.series
        removed = store.removed  # before: a series this creates may evict one of the others
        instances, series_map = self.directory.instances, store.series_map
        found = []
        for iid in ids:
            key = "i:" + iid
            series = series_map.get(key)
            found.append(series if series is not None else store.create(key, INSTANCE_WIDTH))
        # The directory's id strings, not the message's: the same text, held once.
        kept = tuple(info.id if (info := instances.get(iid)) is not None else iid for iid in ids)
        held = self._rows[node_id] = _Rows(kept, tuple(found), removed)
        return held.series

    def _stamp(self, node_id: str, sent: float) -> float:
        """The second a message's samples are stored at: the agent's own clock, or the master's
        while the two are (or were lately) further apart than MAX_SKEW."""
        now = time.time()
        off = abs(sent - now)
        clocked = self._master_clock
        if node_id in clocked:
            if off > TRUST_AGAIN:
                return now
            clocked.discard(node_id)
        elif off > MAX_SKEW:
            clocked.add(node_id)
            return now
        return sent

    def _update_rate(self) -> None:
        mono = time.monotonic()
        elapsed = mono - self._rate_at
        if elapsed >= 5.0:
            self.rate = (self.samples - self._rate_base) / elapsed
            self._rate_at, self._rate_base = mono, self.samples

    def _publish(
        self,
        node_id: str,
        ts: float,
        msg: Metrics,
        rows: list[tuple[Any, ...]],
        wanted: frozenset[str],
    ) -> None:
        hub = self.hub
        if wanted is not self._wanted_keys:
            self._wanted_keys = wanted
            self._wanted_ids = frozenset(k[8:] for k in wanted if k.startswith("metrics:"))
        ids = self._wanted_ids
        if msg.node is not None and node_id in ids:
            data = _sample(NODE_FIELDS, ts, msg.node)
            data.update(id=node_id, kind="node")
            hub.publish("metrics", data, key="metrics:" + node_id)
        for row in rows:
            if row[0] in ids:  # the id's hash is cached from the ownership check
                data = _sample(INSTANCE_FIELDS, ts, row[1:])
                data.update(id=row[0], kind="instance", node_id=node_id)
                hub.publish("metrics", data, key="metrics:" + row[0])

    def query(self, key: str, fields: Sequence[str], seconds: float) -> list[dict[str, Any]]:
        series = self.store.get(key)
        if series is None:
            return []
        since = int(time.time() - seconds) + 1
        return [_sample(fields, sec, values) for sec, values in series.read(since)]

    def latest(self, key: str) -> tuple[int, list[float]] | None:
        series = self.store.get(key)
        return series.latest() if series is not None else None

    def instance_now(self, instance_id: str, fresh: float = 10.0) -> dict[str, Any]:
        """`cpu_percent` and `rss_bytes` of the newest sample, or nothing when none is recent."""
        found = self.latest(instance_key(instance_id))
        if found is None or found[0] < time.time() - fresh:
            return {}
        values = dict(zip(INSTANCE_FIELDS, found[1], strict=False))
        return {"cpu_percent": values["cpu_percent"], "rss_bytes": int(values["rss_bytes"])}
