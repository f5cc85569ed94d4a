"""A table of rows keyed by id, fed by services and updated in batches: `RowTableModel`.

Services call `set_rows()` to replace everything (first load, reconnect) and `update()` /
`remove()` for single changes; those are queued and applied once per tick: new rows in one
`rowsInserted`, gone rows per contiguous range, changed rows as ranged `dataChanged` over only
the columns that changed, never one reset per update and never one signal per cell.

Live figures (CPU, RSS, IO) are kept apart from the rows: the stream stores the newest sample
per key and the next tick emits one `dataChanged` over the live columns, with no per-row Python
work. What views read, and the order, is `CachedRows` (cached_rows.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QModelIndex, QTimer, Signal

from console.models.cached_rows import RESORT_MS, CachedRows, RowT
from console.models.cells import DISPLAY, FOREGROUND, TOOLTIP, Row
from console.models.live_order import LiveOrder

_MISSING: Any = object()
ALL_LIVE = 512  # from this many live samples in a tick, signal the whole live column range


@dataclass
class _Pending:
    changes: dict[str, Row] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)  # keys with a new live sample
    live_all: bool = False  # so many that the whole live range is signalled

    def __bool__(self) -> bool:
        return bool(self.changes or self.removals or self.live or self.live_all)


class RowTableModel(CachedRows[RowT]):
    flushed = Signal(int)  # number of changes applied in the last tick
    content_changed = Signal()  # rows came, went or changed (not only live figures)

    def __init__(self, parent: Any = None, tick_ms: int = 100, resort_ms: int = RESORT_MS) -> None:
        super().__init__(parent, resort_ms)
        self._pending = _Pending()
        # Which columns show a field: a tick's dataChanged spans only the columns that changed.
        self._field_cols: dict[str, list[int]] = {}
        for i, c in enumerate(self.COLUMNS):
            if not c.live:
                for f in c.fields:
                    self._field_cols.setdefault(f, []).append(i)
        self._span_cache: dict[tuple[str, ...], tuple[int, int] | None] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self.flush)

    def set_rows(self, rows: Iterable[RowT]) -> None:
        """Replace everything (first load, after a reconnect) with one reset.

        Changes still queued stay queued and are applied on top at the next tick: they came
        from events that arrived while the snapshot was being fetched, and dropping them would
        lose e.g. a package uploaded during the fetch. Live figures are kept (they are not rows).
        """
        self.beginResetModel()
        self._live_held = False  # every cell is read again
        self._held_rows = set()
        self._rows = [dict(r) for r in rows]
        self._texts.clear()
        self._hay.clear()
        self._order()
        for key in [k for k in self._live_texts if k not in self._index]:
            del self._live_texts[key]
        self.endResetModel()
        self.flushed.emit(len(self._rows))
        self.content_changed.emit()

    def update(self, row: RowT) -> None:
        """Queue a change: a new row, fields merged into an existing one, or (`deleted`) a removal."""
        key = str(row[self.KEY])
        if row.get("deleted"):
            self.remove(key)
            return
        self._pending.removals.discard(key)
        prev = self._pending.changes.get(key)
        if prev is None:
            self._pending.changes[key] = dict(row)
        else:
            prev.update(row)
        self._schedule()

    def update_many(self, rows: Iterable[RowT]) -> None:
        for row in rows:
            self.update(row)

    def remove(self, key: str) -> None:
        self._pending.changes.pop(key, None)
        self._pending.removals.add(key)
        self._schedule()

    def attach_live(self, samples: dict[str, Row], order: LiveOrder | None = None) -> None:
        """Read live figures from `samples` (shared with the stream thread, which writes it;
        see services/stream.py) instead of a dict of the model's own; with `order` (the one
        the writer of `samples` touches), the stream thread works out re-sorts by them."""
        self._live = samples
        self._live_texts.clear()
        if order is not None:
            self.attach_order(order)
        else:
            self._ask_order()

    def live_changed(self, keys: Iterable[str] | None) -> None:
        """These rows have new live figures (None: many, maybe all): signal them at the tick."""
        if not self._live_cols:
            return
        pending = self._pending
        if not pending.live_all:
            if keys is None:
                pending.live_all = True
                pending.live.clear()
            else:
                pending.live.update(keys)
                if len(pending.live) >= ALL_LIVE:
                    pending.live_all = True
                    pending.live.clear()
        self._schedule()

    def set_live(self, samples: dict[str, Row]) -> None:
        """Store the newest live sample of each key and signal them (GUI-thread writers:
        tests; the app's figures come through `attach_live`)."""
        if not samples or not self._live_cols:
            return
        self._live.update(samples)
        self._samples_changed(samples)
        self.live_changed(samples if len(samples) < ALL_LIVE else None)

    def clear_live(self, keys: Iterable[str]) -> None:
        """Forget the live figures of these rows (no longer followed: blank, not stale)."""
        pending = self._pending
        cleared = []
        for key in keys:
            if self._live.pop(key, None) is not None:
                cleared.append(key)
                self._live_texts.pop(key, None)
                if not pending.live_all:
                    pending.live.add(key)
        if cleared:
            self._samples_changed(cleared)
        self._schedule()

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> int:
        """Apply everything queued since the last tick; returns how many rows changed."""
        self._timer.stop()
        pending, self._pending = self._pending, _Pending()
        if not pending:
            return 0
        gone = self._apply_removals(pending.removals) if pending.removals else 0
        changed, new, spans = self._merge(pending.changes)
        self._unsort_live(pending)
        added = self._insert(new)
        resorts = self.resorts
        if self.order_stale:
            self._resort_soon()
        repainted = self.resorts != resorts
        self._signal_rows(spans, repainted)
        live = self._signal_live(pending, repainted)
        applied = gone + changed + live + added
        self.flushed.emit(applied)
        if gone or changed or added:
            self.content_changed.emit()
        return applied

    def _resort_due(self) -> None:
        """Changes queued meanwhile are applied with the re-sort: one repaint for both."""
        if self._pending:
            self.flush()
        else:
            self._resort_when_ready()

    def _merge(
        self, changes: dict[str, Row]
    ) -> tuple[int, list[Row], dict[tuple[int, int], list[int]]]:
        """Merge changes into their rows, grouped by the span of columns that really changed.
        Returns (rows changed, new rows, the rows of each span: see _signal_rows)."""
        spans: dict[tuple[int, int], list[int]] = {}
        new: list[Row] = []
        resorted: list[str] = []  # rows whose sort key may have changed
        sort_col = self.sort_column
        index, rows, texts, hay = self._index, self._rows, self._texts, self._hay
        for key, change in changes.items():
            i = index.get(key)
            if i is None:
                if self.KEY in change:
                    new.append(change)
                continue
            row = rows[i]
            diff = tuple(f for f, v in change.items() if row.get(f, _MISSING) != v)
            if not diff:
                continue
            row.update(change)
            texts.pop(key, None)
            hay.pop(key, None)
            span = self._span(diff)
            if span is not None:
                spans.setdefault(span, []).append(i)
                if span[0] <= sort_col <= span[1]:
                    resorted.append(key)
        self._unsort(resorted)
        return sum(len(s) for s in spans.values()), new, spans

    def _signal_rows(self, spans: dict[tuple[int, int], list[int]], repainted: bool) -> None:
        """Signal merged rows, unless a re-sort just signalled every row (`repainted`) or a
        due one waits for the stream thread's order: then they wait with it (by key)."""
        if repainted or not spans:
            return
        if self.awaiting_order:
            keys = self._keys
            self._held_rows.update(keys[i] for rows in spans.values() for i in rows)
            return
        for (first_col, last_col), rows in spans.items():
            self._emit_changed(rows, first_col, last_col, (DISPLAY, FOREGROUND, TOOLTIP))

    def _unsort_live(self, pending: _Pending) -> None:
        """Rows with new figures may be out of place when sorted by a live column."""
        if (pending.live or pending.live_all) and self.sort_column in self._live_pos:
            self._unsort(None if pending.live_all else pending.live)

    def _signal_live(self, pending: _Pending, repainted: bool) -> int:
        """Signal the live columns of the rows with new figures; returns how many. Not when a
        re-sort just signalled every row (`repainted`), nor while a due re-sort waits for the
        stream thread's order: it signals them then, so the view repaints once, not twice."""
        rows = self._rows
        if not (pending.live or pending.live_all) or not rows:
            return 0
        if pending.live_all:
            hit = None
            signalled = len(rows)
        else:
            index = self._index
            hit = [i for k in pending.live if (i := index.get(k)) is not None]
            signalled = len(hit)
        if repainted or not signalled:
            return signalled
        if self.awaiting_order:
            self._live_held = True  # the re-sort signals every row
        elif hit is None:
            first, last = self._live_cols[0], self._live_cols[-1]
            self.dataChanged.emit(self.index(0, first), self.index(len(rows) - 1, last), [DISPLAY])
        else:
            self._emit_changed(hit, self._live_cols[0], self._live_cols[-1], (DISPLAY,))
        return signalled

    def _insert(self, new: list[Row]) -> int:
        """Append new rows in one `rowsInserted` (the order catches up at the re-sort)."""
        if not new:
            return 0
        first = len(self._rows)
        added = [str(row[self.KEY]) for row in new]
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        # New lists, not appends: the stream thread may be reading the old ones.
        self._rows = self._rows + new
        self._keys = self._keys + added
        self._index.update(zip(added, range(first, first + len(new)), strict=True))
        if self._unsorted is not None:  # their keys are read at the next sort
            self._sort_keys.extend([None] * len(new))
            self._unsort(added)
        self.endInsertRows()
        self._ask_order()
        return len(new)

    def _apply_removals(self, keys: set[str]) -> int:
        doomed = sorted((self._index[k] for k in keys if k in self._index), reverse=True)
        for k in keys:
            self._live_texts.pop(k, None)
            self._texts.pop(k, None)
            self._hay.pop(k, None)
        if not doomed:
            return 0
        # Contiguous runs, last first, so earlier indexes stay valid while removing.
        runs: list[tuple[int, int]] = []
        for i in doomed:
            if runs and runs[-1][0] == i + 1:
                runs[-1] = (i, runs[-1][1])
            else:
                runs.append((i, i))
        self._rows, self._keys = list(self._rows), list(self._keys)  # the stream thread's stay
        for first, last in runs:
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[first : last + 1]
            del self._keys[first : last + 1]
            if self._unsorted is not None:
                del self._sort_keys[first : last + 1]
            self.endRemoveRows()
        self._reindex()
        self._ask_order()
        return len(doomed)

    def _span(self, fields: tuple[str, ...]) -> tuple[int, int] | None:
        if fields in self._span_cache:
            return self._span_cache[fields]
        cols = [c for f in fields for c in self._field_cols.get(f, ())]
        span = (min(cols), max(cols)) if cols else None
        if len(self._span_cache) < 1024:
            self._span_cache[fields] = span
        return span
