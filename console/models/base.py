"""A table of rows keyed by id, fed by services, updated in batches.

Rows are plain dicts (the API's JSON, merged with what events add). Services call `set_rows()`
to replace everything (first load, reconnect) and `update()` / `remove()` for single changes;
those are queued and applied once per tick: new rows in one `rowsInserted`, gone rows per
contiguous range, and changed rows as ranged `dataChanged` signals (adjacent runs merged), never
one reset per update and never one signal per cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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

KEY_ROLE = int(Qt.ItemDataRole.UserRole) + 1  # the row's id
ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 2  # the whole row dict
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 3  # the raw value, for sorting
RAW_ROLE = SORT_ROLE
_SERVED_ROLES = frozenset(
    {
        int(Qt.ItemDataRole.DisplayRole),
        int(Qt.ItemDataRole.TextAlignmentRole),
        int(Qt.ItemDataRole.ForegroundRole),
        int(Qt.ItemDataRole.ToolTipRole),
        KEY_ROLE,
        ROW_ROLE,
        SORT_ROLE,
    }
)

STATE_COLORS = {
    "running": "#1e8e3e",
    "healthy": "#1e8e3e",
    "online": "#1e8e3e",
    "succeeded": "#1e8e3e",
    "resolved": "#1e8e3e",
    "starting": "#b06000",
    "stopping": "#b06000",
    "deploying": "#1a73e8",
    "destroying": "#b06000",
    "stopped": "#5f6368",
    "exited": "#5f6368",
    "failed": "#d93025",
    "unhealthy": "#d93025",
    "firing": "#d93025",
    "critical": "#d93025",
    "warning": "#b06000",
    "offline": "#d93025",
    "unknown": "#9aa0a6",
}


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: Callable[[Any], str] = lambda v: "" if v is None else str(v)
    get: Callable[[Row], Any] | None = None
    numeric: bool = False
    colored: bool = False  # state-like text gets a color
    tooltip: str = ""
    deps: tuple[str, ...] = ()  # the row fields a computed (`get`) column reads

    @property
    def fields(self) -> tuple[str, ...]:
        return self.deps or (self.key,)

    def value(self, row: Row) -> Any:
        return self.get(row) if self.get is not None else row.get(self.key)


@dataclass
class _Pending:
    changes: dict[str, Row] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)  # keys changed only through `merge()`
    batch: dict[str, Row] = field(default_factory=dict)  # `merge_many()`: live figures
    batch_fields: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.changes or self.removals or self.batch)


class RowTableModel(QAbstractTableModel):
    COLUMNS: Sequence[Column] = ()
    KEY = "id"

    flushed = Signal(int)  # number of changes applied in the last tick

    def __init__(self, parent: Any = None, tick_ms: int = 100) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._index: dict[str, int] = {}
        self._pending = _Pending()
        self._col = {c.key: i for i, c in enumerate(self.COLUMNS)}
        # Which columns show a field: a tick's dataChanged spans only the columns that changed,
        # so a proxy sorted on an unchanged column does not re-sort 10,000 rows every second.
        self._field_cols: dict[str, list[int]] = {}
        for i, c in enumerate(self.COLUMNS):
            for f in c.fields:
                self._field_cols.setdefault(f, []).append(i)
        self._span_cache: dict[tuple[str, ...], tuple[int, int] | None] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self.flush)

    # -- Qt model interface ---------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Views ask each visible cell for ~8 roles per paint; the ones never served leave first.
        if role not in _SERVED_ROLES:
            return None
        r = index.row()
        if r < 0 or r >= len(self._rows):
            return None
        row = self._rows[r]
        col = self.COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            try:
                return str(col.fmt(col.value(row)))
            except (TypeError, ValueError):  # a field of an unexpected type: show it raw
                return str(col.value(row))
        if role == SORT_ROLE:
            value = col.value(row)
            if col.numeric:
                return float(value) if isinstance(value, int | float) else -1.0
            return "" if value is None else str(value).lower()
        if role == KEY_ROLE:
            return row.get(self.KEY)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.TextAlignmentRole and col.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col.colored:
            color = STATE_COLORS.get(str(col.value(row)))
            return QBrush(QColor(color)) if color else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(row, col)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.COLUMNS):
            return None
        col = self.COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.title
        if role == Qt.ItemDataRole.ToolTipRole and col.tooltip:
            return col.tooltip
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        names = super().roleNames()
        names[KEY_ROLE] = QByteArray(b"key")
        names[ROW_ROLE] = QByteArray(b"row")
        names[SORT_ROLE] = QByteArray(b"sortValue")
        return names

    def tooltip(self, row: Row, col: Column) -> str | None:
        return None

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

    def __len__(self) -> int:
        return len(self._rows)

    # -- writing --------------------------------------------------------------------------

    def set_rows(self, rows: Iterable[Row]) -> None:
        """Replace everything (first load, after a reconnect) with one reset.

        Changes still queued stay queued and are applied on top at the next tick: they came
        from events that arrived while the snapshot was being fetched, and dropping them would
        lose e.g. a package uploaded during the fetch.
        """
        self.beginResetModel()
        self._rows = [dict(r) for r in rows]
        self._reindex()
        self.endResetModel()
        self.flushed.emit(len(self._rows))

    def update(self, row: Row) -> None:
        """Queue a change: a new row, fields merged into an existing one, or (`deleted`) a removal."""
        key = str(row[self.KEY])
        if row.get("deleted"):
            self.remove(key)
            return
        self._pending.removals.discard(key)
        self._pending.merged.discard(key)
        prev = self._pending.changes.get(key)
        if prev is None:
            self._pending.changes[key] = dict(row)
        else:
            prev.update(row)
        self._schedule()

    def update_many(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.update(row)

    def merge(self, key: str, fields: Row) -> None:
        """The hot path for live figures: merge fields into an existing row at the next tick."""
        if key not in self._index:
            return
        pending = self._pending.changes.get(key)
        if pending is None:
            self._pending.changes[key] = fields
            self._pending.merged.add(key)
        else:
            pending.update(fields)
        if not self._timer.isActive():
            self._timer.start()

    def remove(self, key: str) -> None:
        self._pending.changes.pop(key, None)
        self._pending.removals.add(key)
        self._schedule()

    def merge_many(self, batch: dict[str, Row], fields: Iterable[str]) -> None:
        """Merge many rows' live figures (one event's batch) with one call: the cheapest path.

        `fields` names every field the batch may carry; keys that are not rows are ignored.
        """
        pending = self._pending.batch
        index = self._index
        for key, values in batch.items():
            if key in index:
                prev = pending.get(key)
                if prev is None:
                    pending[key] = values
                else:
                    prev.update(values)
        self._pending.batch_fields.update(fields)
        if not self._timer.isActive():
            self._timer.start()

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
        if pending.removals:
            applied += self._apply_removals(pending.removals)
        # Rows are grouped by the span of columns that really changed: live figures touch a
        # few numeric columns, a state event one or two; each group gets ranged signals.
        spans: dict[tuple[int, int], list[int]] = {}
        new: list[Row] = []
        merged = pending.merged
        for key, change in pending.changes.items():
            i = self._index.get(key)
            if i is None:
                if self.KEY in change:
                    new.append(change)
                continue
            row = self._rows[i]
            if key in merged:  # live figures: they change every tick, no need to compare
                row.update(change)
                span = self._span(tuple(change))
            else:
                diff = [f for f, v in change.items() if row.get(f, _MISSING) != v]
                row.update(change)
                span = self._span(tuple(diff))
            if span is not None:
                spans.setdefault(span, []).append(i)
        if pending.batch:
            index, rows_ = self._index, self._rows
            hit = []
            for key, values in pending.batch.items():
                i = index.get(key)
                if i is not None:
                    rows_[i].update(values)
                    hit.append(i)
            span = self._span(tuple(sorted(pending.batch_fields)))
            if span is not None and hit:
                spans.setdefault(span, []).extend(hit)
        for (first_col, last_col), rows in spans.items():
            self._emit_changed(rows, first_col, last_col)
            applied += len(rows)
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for n, row in enumerate(new):
                self._rows.append(row)
                self._index[str(row[self.KEY])] = first + n
            self.endInsertRows()
            applied += len(new)
        self.flushed.emit(applied)
        return applied

    def _apply_removals(self, keys: set[str]) -> int:
        doomed = sorted((self._index[k] for k in keys if k in self._index), reverse=True)
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

    def _emit_changed(self, rows: list[int], first_col: int, last_col: int, gap: int = 16) -> None:
        rows.sort()
        start = prev = rows[0]
        for i in rows[1:]:
            if i - prev > gap:
                self.dataChanged.emit(self.index(start, first_col), self.index(prev, last_col))
                start = i
            prev = i
        self.dataChanged.emit(self.index(start, first_col), self.index(prev, last_col))

    def _reindex(self) -> None:
        self._index = {str(r[self.KEY]): i for i, r in enumerate(self._rows)}


class FilterProxy(QSortFilterProxyModel):
    """Sorts by the raw value (numbers as numbers) and filters on any column's text."""

    def __init__(self, source: RowTableModel, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(-1)
        self.setDynamicSortFilter(True)

    def set_text(self, text: str) -> None:
        self.setFilterFixedString(text.strip())

    def key_at(self, proxy_row: int) -> str:
        src = self.mapToSource(self.index(proxy_row, 0))
        model = self.sourceModel()
        assert isinstance(model, RowTableModel)
        return model.key_at(src.row())
