"""Live metrics in memory: bounded ring buffers per series, a fixed ceiling whatever the fleet.

Each series (one node or one instance) holds two preallocated `array('f')` rings, numbers only,
never a Python object per sample:
- recent: one slot per second for `recent_seconds` (10 minutes by default);
- history: one average per minute for `history_minutes` (2 hours by default).
A slot with no sample holds NaN, so gaps cost nothing to mark and are skipped when read.
The number of series is capped (`max_series`); a new series beyond the cap evicts the one
written least recently. So memory is at most `max_series x bytes_per_series`, allocated as
series appear, and nothing grows afterwards.

Ingest is O(samples) with no database access: ownership checks come from the in-memory
`Directory`, and `metrics:<id>` events are built only when somebody subscribed to that key.
This is the in-process implementation of the metrics store; a multi-master deployment would
shard series by node behind the same `ingest`/`query` calls.
"""

import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from master.hub import Hub
from master.services.directory import Directory
from protocol.messages import INSTANCE_FIELDS, NODE_FIELDS, Metrics
from protocol.rest import iso

NAN = math.nan
NODE_WIDTH = len(NODE_FIELDS)
INSTANCE_WIDTH = len(INSTANCE_FIELDS)
MAX_SKEW = 30.0  # seconds; an agent clock further off than this is replaced by the master's
FRESH_FOR = 120.0  # seconds; older latest values are not exported to Prometheus

SampleHook = Callable[[str, float, float, list[tuple[Any, ...]]], None]


class Series:
    """Two rings of `width` float32 columns: per second (recent) and per minute (history).

    A sample costs one slice assignment. A minute's average is computed once, when the first
    sample of a later minute arrives, from the per-second slots still in the recent ring.
    Each series' minutes start at its own second (`phase`), so a fleet's series do not all
    close a minute in the same second.
    """

    __slots__ = (
        "coarse",
        "coarse_last",
        "coarse_slots",
        "fine",
        "fine_last",
        "fine_slots",
        "phase",
        "width",
    )

    def __init__(self, width: int, fine_slots: int, coarse_slots: int, phase: int = 0) -> None:
        self.width = width
        self.phase = phase % 60
        self.fine_slots = max(fine_slots, 60)  # a whole minute must fit to be averaged
        self.coarse_slots = coarse_slots
        self.fine = array("f", [NAN]) * (self.fine_slots * width)
        self.coarse = array("f", [NAN]) * (coarse_slots * width)
        self.fine_last = -1  # newest second written
        self.coarse_last = -1  # newest minute written to history

    @staticmethod
    def nbytes(width: int, fine_slots: int, coarse_slots: int) -> int:
        return (max(fine_slots, 60) + coarse_slots) * width * 4

    def add(self, sec: int, values: Sequence[Any], offset: int = 0) -> bool:
        """Store `values[offset:offset+width]` for second `sec`; False if too old to keep.
        A second sample for the same second (intervals under 1 s) replaces the first."""
        w, fs = self.width, self.fine_slots
        last = self.fine_last
        row = array("f", values[offset : offset + w])
        if sec <= last:
            if sec <= last - fs:
                return False
            base = (sec % fs) * w
            self.fine[base : base + w] = row
            return True
        if last >= 0:
            ph = self.phase
            if (sec - ph) // 60 != (last - ph) // 60:
                self._close_minute((last - ph) // 60)  # before gap clearing reuses slots
            if sec - last > 1:
                self._clear(self.fine, fs, last + 1, min(sec - last - 1, fs))
        base = (sec % fs) * w
        self.fine[base : base + w] = row
        self.fine_last = sec
        return True

    def _clear(self, ring: array, slots: int, first: int, count: int) -> None:  # type: ignore[type-arg]
        w = self.width
        start = first % slots
        head = min(count, slots - start)
        ring[start * w : (start + head) * w] = array("f", [NAN]) * (head * w)
        if count > head:
            ring[0 : (count - head) * w] = array("f", [NAN]) * ((count - head) * w)

    def _window(self, first: int, count: int) -> array:  # type: ignore[type-arg]
        """`count` recent-ring rows from second `first` on, in order."""
        w, fs = self.width, self.fine_slots
        start = first % fs
        head = min(count, fs - start)
        block = self.fine[start * w : (start + head) * w]
        if count > head:
            block += self.fine[0 : (count - head) * w]
        return block

    def _close_minute(self, minute: int) -> None:
        w, cs = self.width, self.coarse_slots
        first = max(minute * 60 + self.phase, self.fine_last - self.fine_slots + 1)
        block = self._window(first, self.fine_last - first + 1)
        n = len(block) // w
        # The common case (no gap in the minute, so no NaN in the sums) is a few C-level
        # slices and sums.
        sums = [sum(block[j::w]) for j in range(w)]
        if sums[0] == sums[0]:
            averages = array("f", [x / n for x in sums])
        else:
            present = [i for i, v in enumerate(block[0::w]) if v == v]  # NaN != NaN
            if not present:
                return
            averages = array(
                "f", [sum(block[i * w + j] for i in present) / len(present) for j in range(w)]
            )
        last = self.coarse_last
        if last >= 0 and minute - last > 1:
            self._clear(self.coarse, cs, last + 1, min(minute - last - 1, cs))
        base = (minute % cs) * w
        self.coarse[base : base + w] = averages
        self.coarse_last = minute

    def latest(self) -> tuple[int, list[float]] | None:
        if self.fine_last < 0:
            return None
        base = (self.fine_last % self.fine_slots) * self.width
        return self.fine_last, list(self.fine[base : base + self.width])

    def read(self, since: int) -> list[tuple[int, list[float]]]:
        """Samples from second `since` on: minute averages before the recent window, then
        every second of the recent window that has a sample. Oldest first."""
        out: list[tuple[int, list[float]]] = []
        w = self.width
        fine_start = self.fine_last - self.fine_slots + 1
        if since < fine_start and self.coarse_last >= 0:
            ph = self.phase
            first = max((since - ph) // 60, self.coarse_last - self.coarse_slots + 1)
            # Whole minutes before the recent window (the one it starts in is read per second).
            end = min(self.coarse_last, (fine_start - ph) // 60 - 1)
            for minute in range(first, end + 1):
                base = (minute % self.coarse_slots) * w
                row = list(self.coarse[base : base + w])
                if not math.isnan(row[0]):
                    out.append((minute * 60 + ph, row))
        for sec in range(max(since, fine_start, 0), self.fine_last + 1):
            base = (sec % self.fine_slots) * w
            row = list(self.fine[base : base + w])
            if not math.isnan(row[0]):
                out.append((sec, row))
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

    def __len__(self) -> int:
        return len(self.series_map)

    def ceiling_bytes(self) -> int:
        """The most the sample buffers can take, with every series a node (the wider kind)."""
        return self.max_series * Series.nbytes(NODE_WIDTH, self.fine_slots, self.coarse_slots)

    def allocated_bytes(self) -> int:
        series = list(self.series_map.values())  # a snapshot: scrapes run in a worker thread
        return sum(Series.nbytes(s.width, s.fine_slots, s.coarse_slots) for s in series)

    def add(self, key: str, width: int, sec: int, values: Sequence[Any], offset: int = 0) -> None:
        series = self.series_map.get(key)
        if series is None:
            if len(self.series_map) >= self.max_series:
                self.series_map.popitem(last=False)
                self.evicted += 1
            series = self.series_map[key] = Series(
                width, self.fine_slots, self.coarse_slots, phase=hash(key)
            )
        else:
            self.series_map.move_to_end(key)
        if not series.add(sec, values, offset):
            self.dropped_old += 1

    def get(self, key: str) -> Series | None:
        return self.series_map.get(key)

    def drop(self, key: str) -> None:
        self.series_map.pop(key, None)

    def items(self) -> list[tuple[str, Series]]:
        return list(self.series_map.items())  # a snapshot: safe to walk while ingest goes on


def node_key(node_id: str) -> str:
    return "n:" + node_id


def instance_key(instance_id: str) -> str:
    return "i:" + instance_id


def _sample(fields: Sequence[str], ts: float, values: Sequence[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": iso(ts)}
    for name, value in zip(fields, values, strict=True):
        out[name] = (
            round(value, 2)
            if name in ("cpu_percent", "mem_percent", "disk_percent", "load1")
            else int(value)
        )
    return out


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
        hub.listen("instance", self._on_gone(instance_key))
        hub.listen("node", self._on_gone(node_key))

    def _on_gone(self, key_of: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
        """A destroyed instance or a removed node: its series go at once, not at eviction."""

        def listener(data: dict[str, Any]) -> None:
            if data.get("deleted") and isinstance(data.get("id"), str):
                self.store.drop(key_of(data["id"]))

        return listener

    def ingest(self, node_id: str, msg: Metrics) -> None:
        now = time.time()
        ts = msg.ts if abs(msg.ts - now) <= MAX_SKEW else now
        sec = int(ts)
        store = self.store
        count = 0
        if msg.node is not None:
            store.add("n:" + node_id, NODE_WIDTH, sec, msg.node)
            count += 1
        owned = self.directory.owned_by(node_id)
        rows = msg.instances
        accepted = [row for row in rows if row[0] in owned]
        self.rejected += len(rows) - len(accepted)
        series_map = store.series_map
        for row in accepted:  # MetricsStore.add, inlined: the master's hottest loop
            key = "i:" + row[0]
            series = series_map.get(key)
            if series is None:
                store.add(key, INSTANCE_WIDTH, sec, row, 1)
                continue
            series_map.move_to_end(key)
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
        key = "metrics:" + node_id
        if msg.node is not None and key in wanted:
            data = _sample(NODE_FIELDS, ts, msg.node)
            data.update(id=node_id, kind="node")
            hub.publish("metrics", data, key=key)
        for row in rows:
            key = "metrics:" + row[0]
            if key in wanted:
                data = _sample(INSTANCE_FIELDS, ts, row[1:])
                data.update(id=row[0], kind="instance", node_id=node_id)
                hub.publish("metrics", data, key=key)

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
