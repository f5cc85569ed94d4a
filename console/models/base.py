"""A table of rows keyed by id, fed by services, updated in batches; it sorts itself.

Rows are plain dicts (the API's JSON, merged with what events add). Services call `set_rows()`
to replace everything (first load, reconnect) and `update()` / `remove()` for single changes;
those are queued and applied once per tick: new rows in one `rowsInserted`, gone rows per
contiguous range, changed rows as ranged `dataChanged` over only the columns that changed,
never one reset per update and never one signal per cell.

Live figures (CPU, RSS, IO) are kept apart from the rows: `set_live({key: sample})` stores the
newest sample per key in one dict update, with no per-row Python work, and the next tick emits
one `dataChanged` over the live columns. What a cell shows is formatted when a view first asks
for it and cached (per row for the ordinary columns, per sample for the live ones), so a tick
formats only the cells that are visible and changed, and `data()` is a lookup.

Sorting is the model's own (`sort()`, reached through the proxy): a key function over cached
values sorts 10,000 rows in a few milliseconds, where `QSortFilterProxyModel` would call
`data()` twice per comparison (several seconds). When the sorted column changes, the order is
brought up to date at the next tick for small tables and on a slower timer for large ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor

Index = QModelIndex | QPersistentModelIndex
_MISSING: Any = object()
Row = dict[str, Any]

DISPLAY = int(Qt.ItemDataRole.DisplayRole)
ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
KEY_ROLE = int(Qt.ItemDataRole.UserRole) + 1  # the row's id
ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 2  # the whole row dict
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 3  # the raw value, for sorting
RAW_ROLE = SORT_ROLE
FILTER_ROLE = int(Qt.ItemDataRole.UserRole) + 4  # lower-case text of the row, for filter boxes
_SERVED_ROLES = frozenset(
    {DISPLAY, ALIGN, FOREGROUND, TOOLTIP, KEY_ROLE, ROW_ROLE, SORT_ROLE, FILTER_ROLE}
)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_ASC = Qt.SortOrder.AscendingOrder

SMALL_TABLE = 2000  # rows; up to this many, a changed sort column re-sorts at the next tick
RESORT_MS = 2000  # larger tables re-sort at most this often while the sorted column changes
ALL_LIVE = 512  # from this many live samples in a tick, signal the whole live column range

STATE_COLORS = {
    "running": "#1e8e3e",
    "healthy": "#1e8e3e",
    "online": "#1e8e3e",
    "succeeded": "#1e8e3e",
    "done": "#1e8e3e",
    "resolved": "#1e8e3e",
    "active": "#1e8e3e",
    "starting": "#b06000",
    "waiting_health": "#b06000",
    "stopping": "#b06000",
    "deploying": "#1a73e8",
    "destroying": "#b06000",
    "stopped": "#5f6368",
    "exited": "#5f6368",
    "pending": "#5f6368",
    "skipped": "#5f6368",
    "cancelled": "#5f6368",
    "failed": "#d93025",
    "unhealthy": "#d93025",
    "firing": "#d93025",
    "critical": "#d93025",
    "warning": "#b06000",
    "offline": "#d93025",
    "unknown": "#9aa0a6",
    "root": "#d93025",  # an instance's user: a service running as root is marked
}
STALE_COLOR = "#9aa0a6"  # rows that are not live (the master is unreachable)
_COLORS = {state: QColor(color) for state, color in STATE_COLORS.items()}
_BRUSHES = {state: QBrush(color) for state, color in _COLORS.items()}
_STALE_BRUSH = QBrush(QColor(STALE_COLOR))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: Callable[[Any], str] = _text
    get: Callable[[Row], Any] | None = None
    numeric: bool = False
    colored: bool = False  # state-like text gets a color
    tooltip: str = ""
    deps: tuple[str, ...] = ()  # the row fields a computed (`get`) column reads
    live: bool = False  # read from the newest live sample (`set_live`), not from the row

    @property
    def fields(self) -> tuple[str, ...]:
        return self.deps or (self.key,)

    def value(self, row: Row) -> Any:
        return self.get(row) if self.get is not None else row.get(self.key)

    def show(self, value: Any) -> str:
        try:
            return str(self.fmt(value))
        except (TypeError, ValueError):  # a field of an unexpected type: show it raw
            return _text(value)

    def sort_key(self, value: Any) -> Any:
        if self.numeric:
            return float(value) if isinstance(value, int | float) else -1.0
        return "" if value is None else str(value).lower()


@dataclass
class _Pending:
    changes: dict[str, Row] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)  # keys with a new live sample
    live_all: bool = False  # so many that the whole live range is signalled

    def __bool__(self) -> bool:
        return bool(self.changes or self.removals or self.live or self.live_all)


class RowTableModel(QAbstractTableModel):
    COLUMNS: Sequence[Column] = ()
    KEY = "id"

    flushed = Signal(int)  # number of changes applied in the last tick
    content_changed = Signal()  # rows came, went or changed (not only live figures)

    def __init__(self, parent: Any = None, tick_ms: int = 100, resort_ms: int = RESORT_MS) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._index: dict[str, int] = {}
        self._texts: dict[str, list[str]] = {}  # key -> shown text per column (live ones "")
        self._hay: dict[str, str] = {}  # key -> lower-case text of the row, for filters
        self._live: dict[str, Row] = {}  # key -> newest live sample
        self._live_texts: dict[str, tuple[Row, list[str]]] = {}  # key -> (sample, texts)
        self._pending = _Pending()
        cols = self.COLUMNS
        self._ncols = len(cols)
        self._col = {c.key: i for i, c in enumerate(cols)}
        self._live_cols = [i for i, c in enumerate(cols) if c.live]
        self._live_pos = {c: n for n, c in enumerate(self._live_cols)}
        self._no_live = [""] * len(self._live_cols)
        self._is_live = [c.live for c in cols]
        self._align = [_RIGHT if c.numeric else None for c in cols]
        # Which columns show a field: a tick's dataChanged spans only the columns that changed.
        self._field_cols: dict[str, list[int]] = {}
        for i, c in enumerate(cols):
            if not c.live:
                for f in c.fields:
                    self._field_cols.setdefault(f, []).append(i)
        self._span_cache: dict[tuple[str, ...], tuple[int, int] | None] = {}
        self.sort_column = -1
        self.sort_order = _ASC
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self.flush)
        self._resort_timer = QTimer(self)
        self._resort_timer.setSingleShot(True)
        self._resort_ms = resort_ms
        self._resort_timer.timeout.connect(self.resort)
        self._resorted_at = 0.0
        self.resorts = 0  # how many times the order was brought up to date (tests, bench)
        self.stale = False  # the last known state, not live: every cell is greyed

    # -- Qt model interface ---------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._ncols

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        # Views ask each visible cell for ~7 roles per paint: unserved ones leave first, and
        # the text is a cache lookup (formatted once per change, only for cells shown).
        if role not in _SERVED_ROLES:
            return None
        r = index.row()
        rows = self._rows
        if r < 0 or r >= len(rows):
            return None
        c = index.column()
        if role == DISPLAY:
            if self._is_live[c]:
                return self.live_texts_at(r)[self._live_pos[c]]
            return self.texts_at(r)[c]
        if role == ALIGN:
            return self._align[c]
        col = self.COLUMNS[c]
        if role == FOREGROUND:
            if self.stale:
                return _STALE_BRUSH
            return _BRUSHES.get(_text(col.value(rows[r]))) if col.colored else None
        if role == SORT_ROLE:
            return col.sort_key(self.value(r, c))
        if role == KEY_ROLE:
            return rows[r].get(self.KEY)
        if role == ROW_ROLE:
            return rows[r]
        if role == TOOLTIP:
            return self.tooltip(rows[r], col)
        if role == FILTER_ROLE:
            return self.filter_text(r)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < self._ncols:
            return None
        col = self.COLUMNS[section]
        if role == DISPLAY:
            return col.title
        if role == TOOLTIP and col.tooltip:
            return col.tooltip
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        names = super().roleNames()
        names[KEY_ROLE] = QByteArray(b"key")
        names[ROW_ROLE] = QByteArray(b"row")
        names[SORT_ROLE] = QByteArray(b"sortValue")
        names[FILTER_ROLE] = QByteArray(b"filterText")
        return names

    def sort(self, column: int, order: Qt.SortOrder = _ASC) -> None:
        """Sort by a column (the view's header click arrives here through the proxy)."""
        self.sort_column = column if 0 <= column < self._ncols else -1
        self.sort_order = order
        self.resort()

    def tooltip(self, row: Row, col: Column) -> str | None:
        return None

    def set_stale(self, stale: bool) -> None:
        """Grey every cell while what the rows say may no longer be true (or back to colors)."""
        if stale != self.stale:
            self.stale = stale
            if self._rows:
                self.dataChanged.emit(
                    self.index(0, 0),
                    self.index(len(self._rows) - 1, self._ncols - 1),
                    [FOREGROUND],
                )

    def _format(self, row: Row) -> list[str]:
        return [
            "" if c.live else c.show(c.value(row))
            for c in self.COLUMNS  # live: see live_texts_at
        ]

    def texts_at(self, r: int) -> list[str]:
        """What every column of row `r` shows but the live ones ("" there; the view's path)."""
        row = self._rows[r]
        key = row[self.KEY]
        texts = self._texts.get(key)
        if texts is None:
            texts = self._texts[key] = self._format(row)
        return texts

    def color_at(self, r: int, c: int) -> QColor | None:
        """The text color of a state-like cell (None: the palette's)."""
        col = self.COLUMNS[c]
        if not col.colored:
            return None
        return _COLORS.get(_text(col.value(self._rows[r])))

    @property
    def colored_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.COLUMNS) if c.colored]

    @property
    def right_aligned(self) -> list[bool]:
        return [a is not None for a in self._align]

    def filter_text(self, r: int) -> str:
        """The row's text in lower case (live figures left out): what filter boxes search."""
        key = self._rows[r][self.KEY]
        hay = self._hay.get(key)
        if hay is None:
            hay = self._hay[key] = "\x1f".join(self.texts_at(r)).lower()
        return hay

    # -- reading --------------------------------------------------------------------------

    def column(self, key: str) -> int:
        return self._col[key]

    def row(self, key: str) -> Row | None:
        i = self._index.get(key)
        return None if i is None else self._rows[i]

    def row_at(self, i: int) -> Row:
        return self._rows[i]

    def key_at(self, i: int) -> str:
        return str(self._rows[i][self.KEY])

    def row_of(self, key: str) -> int:
        return self._index.get(key, -1)

    def rows(self) -> list[Row]:
        return list(self._rows)

    def key_list(self) -> list[str]:
        return list(self._index)

    @property
    def live_columns(self) -> list[int]:
        return list(self._live_cols)

    def live_texts_at(self, r: int) -> list[str]:
        """What the live columns of row `r` show, in their order (the view's fast path)."""
        key = self._rows[r][self.KEY]
        sample = self._live.get(key)
        if sample is None:
            return self._no_live
        cached = self._live_texts.get(key)
        if cached is None or cached[0] is not sample:  # a new sample: format its cells once
            cols = self.COLUMNS
            cached = (sample, [cols[i].show(sample.get(cols[i].key)) for i in self._live_cols])
            self._live_texts[key] = cached
        return cached[1]

    def live(self, key: str) -> Row | None:
        """The newest live sample of a row (what the live columns show)."""
        return self._live.get(key)

    def value(self, r: int, c: int) -> Any:
        """The raw value a cell shows (the live sample's for live columns)."""
        row = self._rows[r]
        col = self.COLUMNS[c]
        if col.live:
            return (self._live.get(row[self.KEY]) or {}).get(col.key)
        return col.value(row)

    def __len__(self) -> int:
        return len(self._rows)

    # -- writing --------------------------------------------------------------------------

    def set_rows(self, rows: Iterable[Row]) -> None:
        """Replace everything (first load, after a reconnect) with one reset.

        Changes still queued stay queued and are applied on top at the next tick: they came
        from events that arrived while the snapshot was being fetched, and dropping them would
        lose e.g. a package uploaded during the fetch. Live figures are kept (they are not rows).
        """
        self.beginResetModel()
        self._rows = [dict(r) for r in rows]
        self._texts.clear()
        self._hay.clear()
        self._order()
        self._reindex()
        for key in [k for k in self._live_texts if k not in self._index]:
            del self._live_texts[key]
        self.endResetModel()
        self.flushed.emit(len(self._rows))
        self.content_changed.emit()

    def update(self, row: Row) -> None:
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

    def update_many(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.update(row)

    def remove(self, key: str) -> None:
        self._pending.changes.pop(key, None)
        self._pending.removals.add(key)
        self._schedule()

    def attach_live(self, samples: dict[str, Row]) -> None:
        """Read live figures from `samples` (shared with the stream thread, which writes it;
        see services/stream.py) instead of a dict of the model's own."""
        self._live = samples
        self._live_texts.clear()

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
        self.live_changed(samples if len(samples) < ALL_LIVE else None)

    def clear_live(self, keys: Iterable[str]) -> None:
        """Forget the live figures of these rows (no longer followed: blank, not stale)."""
        pending = self._pending
        for key in keys:
            if self._live.pop(key, None) is not None:
                self._live_texts.pop(key, None)
                if not pending.live_all:
                    pending.live.add(key)
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
        applied = 0
        content = False
        resort = False
        sort_col = self.sort_column
        if pending.removals:
            gone = self._apply_removals(pending.removals)
            applied += gone
            content = content or gone > 0
        # Rows are grouped by the span of columns that really changed; each group gets
        # ranged signals.
        spans: dict[tuple[int, int], list[int]] = {}
        new: list[Row] = []
        index, rows, texts, hay = self._index, self._rows, self._texts, self._hay
        for key, change in pending.changes.items():
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
                    resort = True
        for (first_col, last_col), changed in spans.items():
            self._emit_changed(changed, first_col, last_col, (DISPLAY, FOREGROUND, TOOLTIP))
            applied += len(changed)
            content = True
        if (pending.live or pending.live_all) and rows:
            first, last = self._live_cols[0], self._live_cols[-1]
            if pending.live_all:
                self.dataChanged.emit(
                    self.index(0, first), self.index(len(rows) - 1, last), [DISPLAY]
                )
                applied += len(rows)
            else:
                hit = [i for k in pending.live if (i := index.get(k)) is not None]
                if hit:
                    self._emit_changed(hit, first, last, (DISPLAY,))
                    applied += len(hit)
            if sort_col in self._live_pos:
                resort = True
        if new:
            first = len(rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for n, row in enumerate(new):
                rows.append(row)
                index[str(row[self.KEY])] = first + n
            self.endInsertRows()
            applied += len(new)
            content = True
            resort = resort or sort_col >= 0
        if resort:
            self._resort_soon()
        self.flushed.emit(applied)
        if content:
            self.content_changed.emit()
        return applied

    def _resort_soon(self) -> None:
        # Large tables: at most about once per `resort_ms`, inside a tick's flush, so the new
        # order and the tick's changes reach the view in one repaint; the timer is only the
        # fallback for when no further tick comes.
        since = time.monotonic() - self._resorted_at
        interval = self._resort_ms / 1000
        if len(self._rows) <= SMALL_TABLE or since >= interval * 0.9:
            self.resort()
        elif not self._resort_timer.isActive():
            self._resort_timer.start(int((interval - since) * 1000) + 500)

    def resort(self) -> None:
        """Bring the order up to date with the sort column (one layout change, selection kept)."""
        self._resort_timer.stop()
        self._resorted_at = time.monotonic()
        if self.sort_column < 0 or len(self._rows) < 2:
            return
        ordered = self._ordered(self._rows)
        if all(a is b for a, b in zip(ordered, self._rows, strict=True)):
            return  # nothing moved: no layout change for views and proxies to redo
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        held = [(self._rows[p.row()][self.KEY], p.column()) for p in persistent]
        self._rows = ordered
        self._reindex()
        self.changePersistentIndexList(
            persistent, [self.index(self._index[key], col) for key, col in held]
        )
        self.layoutChanged.emit()
        self.resorts += 1

    def _order(self) -> None:
        self._rows = self._ordered(self._rows)

    def _ordered(self, rows: list[Row]) -> list[Row]:
        """`rows` sorted by the sort column (stable): one key per row, then one sort."""
        c = self.sort_column
        if c < 0:
            return rows
        col = self.COLUMNS[c]
        if col.live:
            live, name, k = self._live, col.key, self.KEY
            values = [(s.get(name) if (s := live.get(r[k])) is not None else None) for r in rows]
        else:
            values = [col.value(r) for r in rows]
        descending = self.sort_order != _ASC
        if col.numeric:  # numbers: a stable argsort in numpy, not 130,000 Python compares
            nums = np.fromiter(
                (v if type(v) is float or type(v) is int else -1.0 for v in values),
                dtype=np.float64,
                count=len(values),
            )
            order = np.argsort(-nums if descending else nums, kind="stable").tolist()
        else:
            keys = ["" if v is None else str(v).lower() for v in values]
            order = sorted(range(len(rows)), key=keys.__getitem__, reverse=descending)
        return [rows[i] for i in order]

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
        for first, last in runs:
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[first : last + 1]
            self.endRemoveRows()
        self._reindex()
        return len(doomed)

    def _span(self, fields: tuple[str, ...]) -> tuple[int, int] | None:
        if fields in self._span_cache:
            return self._span_cache[fields]
        cols = [c for f in fields for c in self._field_cols.get(f, ())]
        span = (min(cols), max(cols)) if cols else None
        if len(self._span_cache) < 1024:
            self._span_cache[fields] = span
        return span

    def _emit_changed(
        self,
        rows: list[int],
        first_col: int,
        last_col: int,
        roles: Sequence[int],
        gap: int = 16,
    ) -> None:
        rows.sort()
        roles_list = list(roles)
        start = prev = rows[0]
        for i in rows[1:]:
            if i - prev > gap:
                self.dataChanged.emit(
                    self.index(start, first_col), self.index(prev, last_col), roles_list
                )
                start = i
            prev = i
        self.dataChanged.emit(self.index(start, first_col), self.index(prev, last_col), roles_list)

    def _reindex(self) -> None:
        k = self.KEY
        self._index = {str(r[k]): i for i, r in enumerate(self._rows)}


class FilterProxy(QSortFilterProxyModel):
    """Filters on the rows' text; sorting is the source model's own (see RowTableModel.sort).

    Nothing here is Python on the paint path or while no filter is set: Qt's own filter
    accepts every row at once for an empty pattern. A filter asks the source for one cached
    string per row (`FILTER_ROLE`: every column but the live figures), or for one column's text.
    Not dynamic: the proxy never re-sorts or re-filters on `dataChanged` (a tick of live
    figures would otherwise re-filter 10,000 rows); content changes re-apply an active filter
    on a short timer instead.
    """

    def __init__(self, source: RowTableModel, parent: Any = None, refilter_ms: int = 300) -> None:
        super().__init__(parent)
        self.setSourceModel(source)
        self.source = source
        self.setDynamicSortFilter(False)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(0)
        self.setFilterRole(FILTER_ROLE)
        self._refilter = QTimer(self)
        self._refilter.setSingleShot(True)
        self._refilter.setInterval(refilter_ms)
        self._refilter.timeout.connect(self.refilter)
        source.content_changed.connect(self._content_changed)
        self.filtering = False  # a filter is set: proxy rows are not source rows

    def set_text(self, text: str, column: int = -1) -> None:
        """Show only rows containing `text` (in `column`, or anywhere but the live figures)."""
        if column >= 0:
            self.setFilterRole(DISPLAY)
            self.setFilterKeyColumn(column)
        else:
            self.setFilterRole(FILTER_ROLE)
            self.setFilterKeyColumn(0)
        self.filtering = bool(text.strip())
        self.setFilterFixedString(text.strip())

    def refilter(self) -> None:
        """Apply the filter again to every row (after content changes)."""
        self.beginFilterChange()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def _content_changed(self) -> None:
        if self.filtering and not self._refilter.isActive():
            self._refilter.start()

    def sort(self, column: int, order: Qt.SortOrder = _ASC) -> None:
        self.source.sort(column, order)

    def key_at(self, proxy_row: int) -> str:
        src = self.mapToSource(self.index(proxy_row, 0))
        return self.source.key_at(src.row())
