"""Live metrics: `metrics` events and history calls into bounded series (and the instance table).

The master's metrics events are read leniently (the metrics side is built in parallel): a sample
may come flat (`{"instance_id", "ts", "cpu_percent", ...}`), as `{"instance_id"|"node_id"|"id",
"samples": [...]}`, or as a batch `{"samples": [{"instance_id", ...}, ...]}`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import QObject, Signal

from console import fmt
from console.client import ClientError
from console.message import action, async_slot
from console.models.series import SeriesStore
from console.services.session import Session

INSTANCE_FIELDS = ("cpu_percent", "rss_bytes", "read_bps", "write_bps", "threads")
_NUMBER = (int, float)
NODE_FIELDS = ("cpu_percent", "mem_percent", "net_rx_bps", "net_tx_bps", "disk_percent", "load1")


def samples_in(data: dict[str, Any]) -> Iterator[tuple[str, str, float, dict[str, float]]]:
    """(target id, "instance"|"node", ts, numeric fields) for every sample in one event."""
    # A hot path (thousands of samples a second): plain dict lookups, no per-field isinstance.
    owner_kind = "node" if "node_id" in data and "instance_id" not in data else "instance"
    owner = data.get("instance_id") or data.get("node_id") or data.get("id")
    batch = data.get("samples")
    items = batch if isinstance(batch, list) else [data]
    now = time.time()
    for sample in items:
        if type(sample) is not dict:
            continue
        target = sample.get("instance_id")
        kind = "instance"
        if target is None:
            target = sample.get("node_id")
            kind = "node" if target is not None else owner_kind
            target = target or owner
        if not target:
            continue
        raw_ts = sample.get("ts")
        ts = (
            raw_ts
            if type(raw_ts) is float
            else fmt.timestamp(raw_ts)
            if raw_ts is not None
            else now
        )
        values = {}
        for f in INSTANCE_FIELDS if kind == "instance" else NODE_FIELDS:
            v = sample.get(f)
            if type(v) in _NUMBER:
                values[f] = float(v)  # type: ignore[arg-type]
        if values:
            yield str(target), kind, ts, values


class MetricsService(QObject):
    """Keeps series for what charts show; subscribes the stream to those targets."""

    history_loaded = Signal(str)  # target id
    unavailable = Signal(str)  # why charts have no history (endpoint missing)

    def __init__(self, session: Session, store: SeriesStore | None = None) -> None:
        super().__init__()
        self.session = session
        self.store = store or SeriesStore()
        self.kinds: dict[str, str] = {}
        self.watched: set[str] = set()
        session.on("metrics", self._on_metrics)

    def _on_metrics(self, data: dict[str, Any]) -> None:
        # Only what a chart shows is kept (its history comes from the API when it opens), so a
        # fleet's worth of samples per second costs a dict lookup each, not a series append.
        watched = self.watched
        for target, kind, ts, values in samples_in(data):
            if target in watched:
                self.kinds.setdefault(target, kind)
                self.store.add(target, ts, values)

    def add_sample(self, target: str, ts: float, values: dict[str, float]) -> None:
        self.store.add(target, ts, values)

    @async_slot(str, str, int)
    @action("loading metrics")
    async def watch(self, kind: str, target: str, seconds: int = 3600) -> None:
        """Show `target` in charts: load its history, then follow it live."""
        client = self.session.require()
        self.kinds[target] = kind
        if target not in self.watched:
            self.watched.add(target)
            await self.session.subscribe([f"metrics:{target}"])
        try:
            samples = (
                await client.instance_metrics(target, seconds)
                if kind == "instance"
                else await client.node_metrics(target, seconds)
            )
        except ClientError as exc:
            if exc.endpoint_missing:
                self.unavailable.emit(
                    "this master keeps no metrics history yet (no metrics endpoint)"
                )
                return
            raise
        fields = INSTANCE_FIELDS if kind == "instance" else NODE_FIELDS
        for s in samples:
            raw = s.model_dump()
            values = {f: float(raw[f]) for f in fields if isinstance(raw.get(f), int | float)}
            self.store.add(target, fmt.timestamp(raw.get("ts")), values)
        self.history_loaded.emit(target)

    @async_slot(str)
    @action("stopping a metrics subscription")
    async def unwatch(self, target: str) -> None:
        if target in self.watched:
            self.watched.discard(target)
            await self.session.unsubscribe([f"metrics:{target}"])
