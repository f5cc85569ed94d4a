"""Live metrics: which targets the event stream follows, and bounded series for the charts.

The master sends a target's samples only to a stream subscribed to `metrics:<id>`
(`{"id","kind":"instance"|"node","ts",...fields}` once per sample) and accepts at most 256 keys
per stream. So the console spends a budget of keys: first on what the charts show, then on the
instance rows the table shows (all of them in a fleet that fits, else the visible ones). A row
that leaves the budget has its live figures cleared (`released`), so nothing stale is shown as
live. Charts load their history from `GET .../metrics?seconds=` when they open.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from console import fmt
from console.client import ClientError
from console.message import action, async_slot
from console.models.series import SeriesStore
from console.services.session import Session

INSTANCE_FIELDS = ("cpu_percent", "rss_bytes", "read_bps", "write_bps", "threads")
NODE_FIELDS = ("cpu_percent", "mem_percent", "disk_percent", "net_rx_bps", "net_tx_bps", "load1")
KEY_BUDGET = 240  # the master takes 256 subscription keys per stream; log follows need a few
_NUMBER = (int, float)


def sample_values(sample: dict[str, Any], fields: Iterable[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in fields:
        v = sample.get(f)
        if type(v) in _NUMBER:
            out[f] = float(v)  # type: ignore[arg-type]
    return out


class MetricsService(QObject):
    history_loaded = Signal(str)  # target id
    unavailable = Signal(str)  # why charts have no history (endpoint missing)
    released = Signal(list)  # instance ids whose live figures are no longer followed

    def __init__(
        self, session: Session, store: SeriesStore | None = None, budget: int = KEY_BUDGET
    ) -> None:
        super().__init__()
        self.session = session
        self.store = store if store is not None else SeriesStore()
        self.budget = budget
        self.charted: dict[str, str] = {}  # target id -> "instance" | "node", in the charts
        self.table_rows: list[str] = []  # instance ids the table wants live, most wanted first
        self.subscribed: set[str] = set()  # targets with a `metrics:<id>` subscription
        self._loading: dict[str, list[dict[str, Any]]] = {}  # live samples held during history
        self._last: dict[str, dict[str, Any]] = {}  # the sample last stored per chart
        self._sync_timer = QTimer(self)
        self._sync_timer.setSingleShot(True)
        self._sync_timer.setInterval(150)
        self._sync_timer.timeout.connect(self._sync_due)
        session.on_metrics(self._on_metrics)
        session.logged_out.connect(self._forget)

    @property
    def watched(self) -> set[str]:
        return set(self.charted)

    def _on_metrics(self, samples: dict[str, dict[str, Any]], changed: set[str] | None) -> None:
        # Series only for what a chart shows: a lookup per chart, nothing per sample.
        for target, kind in self.charted.items():
            if changed is not None and target not in changed:
                continue
            sample = samples.get(target)
            if sample is None or sample is self._last.get(target):
                continue
            self._last[target] = sample
            held = self._loading.get(target)
            if held is not None:  # its history is on the way: these come after it
                held.append(sample)
            else:
                self._store(target, kind, sample)

    def _store(self, target: str, kind: str, sample: dict[str, Any]) -> None:
        fields = INSTANCE_FIELDS if kind == "instance" else NODE_FIELDS
        self.store.add(target, fmt.timestamp(sample.get("ts")), sample_values(sample, fields))

    def add_sample(self, target: str, ts: float, values: dict[str, float]) -> None:
        self.store.add(target, ts, values)

    # -- what is followed -----------------------------------------------------------------

    def want_rows(self, instance_ids: list[str]) -> None:
        """The instance rows the table would like live, most wanted first (visible ones)."""
        if instance_ids != self.table_rows:
            self.table_rows = list(instance_ids)
            self._sync_timer.start()

    def wanted(self) -> list[str]:
        keys = list(self.charted)
        seen = set(keys)
        keys += [k for k in self.table_rows if k not in seen]
        return keys[: self.budget]

    def _sync_due(self) -> None:
        if self.session.stream is not None:  # logged out meanwhile: nothing to follow
            self.sync()

    @async_slot()
    @action("following live metrics")
    async def sync(self) -> None:
        if self.session.stream is None:
            return
        want = self.wanted()
        wanted = set(want)
        new = [k for k in want if k not in self.subscribed]
        gone = sorted(self.subscribed - wanted)
        self.subscribed = wanted
        if gone:
            await self.session.unsubscribe(f"metrics:{k}" for k in gone)
            self.released.emit(gone)
        if new:
            await self.session.subscribe(f"metrics:{k}" for k in new)

    def _forget(self) -> None:
        self.subscribed.clear()
        self.charted.clear()

    # -- charts ---------------------------------------------------------------------------

    @async_slot(str, str, int)
    @action("loading metrics")
    async def watch(self, kind: str, target: str, seconds: int = 3600) -> None:
        """Show `target` in charts: follow it live, then load its history."""
        client = self.session.require()
        self.charted[target] = kind
        held = self._loading[target] = []
        try:
            await self.sync()
            samples = (
                await client.instance_metrics(target, seconds)
                if kind == "instance"
                else await client.node_metrics(target, seconds)
            )
        except ClientError as exc:
            if not exc.endpoint_missing:
                raise
            self.unavailable.emit(f"this master keeps no metrics history (no {kind} metrics)")
            samples = []
        finally:
            self._loading.pop(target, None)  # live samples go straight to the series again
        self.store.drop(target)  # a fresh history, then the live samples that came meanwhile
        for s in samples:
            self._store(target, kind, s.model_dump())
        for sample in held:
            self._store(target, kind, sample)
        self.history_loaded.emit(target)

    @async_slot(str)
    @action("stopping a metrics subscription")
    async def unwatch(self, target: str) -> None:
        if self.charted.pop(target, None) is not None:
            self._last.pop(target, None)
            await self.sync()
