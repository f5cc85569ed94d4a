"""Rows keyed by id as Qt views read them: each cell's text formatted once and cached, live
figures apart from the rows, and the model's own sorting.

What a cell shows is formatted when a view first asks for it and cached (per row for the
ordinary columns, per sample for the live ones), so `data()` is a lookup and a tick formats
only the cells that are visible and changed. Sorting is a key function over cached values
(`sort()`, reached through the proxy), not `QSortFilterProxyModel`'s comparisons, which would
call `data()` twice per comparison. When the sorted column changes, small tables re-sort at the
next tick and large ones on a slower timer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from PySide6.QtCore import (
    QAbstractTableModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import QColor

from console.models.cells import (
    ALIGN,
    BRUSHES,
    COLORS,
    DISPLAY,
    FILTER_ROLE,
    FOREGROUND,
    KEY_ROLE,
    ROW_ROLE,
    SORT_ROLE,
    STALE_BRUSH,
    TOOLTIP,
    Column,
    Row,
    as_text,
)

Index = QModelIndex | QPersistentModelIndex
RowT = TypeVar("RowT", bound=Mapping[str, Any])  # the row type of a table (models/rows.py)
_SERVED_ROLES = frozenset(
    {DISPLAY, ALIGN, FOREGROUND, TOOLTIP, KEY_ROLE, ROW_ROLE, SORT_ROLE, FILTER_ROLE}
)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_ASC = Qt.SortOrder.AscendingOrder

SMALL_TABLE = 2000  # rows; up to this many, a changed sort column re-sorts at the next tick
RESORT_MS = 2000  # larger tables re-sort at most this often while the sorted column changes


class CachedRows(QAbstractTableModel, Generic[RowT]):
    COLUMNS: Sequence[Column] = ()
    KEY = "id"

    def __init__(self, parent: Any = None, resort_ms: int = RESORT_MS) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._index: dict[str, int] = {}
        self._texts: dict[str, list[str]] = {}  # key -> shown text per column (live ones "")
        self._hay: dict[str, str] = {}  # key -> lower-case text of the row, for filters
        self._live: dict[str, Row] = {}  # key -> newest live sample
        self._live_texts: dict[str, tuple[Row, list[str]]] = {}  # key -> (sample, texts)
        cols = self.COLUMNS
        self._ncols = len(cols)
        self._col = {c.key: i for i, c in enumerate(cols)}
        self._live_cols = [i for i, c in enumerate(cols) if c.live]
        self._live_pos = {c: n for n, c in enumerate(self._live_cols)}
        self._no_live = [""] * len(self._live_cols)
        self._is_live = [c.live for c in cols]
        self._align = [_RIGHT if c.numeric else None for c in cols]
        self.sort_column = -1
        self.sort_order = _ASC
        self._resort_timer = QTimer(self)
        self._resort_timer.setSingleShot(True)
        self._resort_ms = resort_ms
        self._resort_timer.timeout.connect(self.resort)
        self._resorted_at = 0.0
        self.resorts = 0  # how many times the order was brought up to date
        self.stale = False  # the last known state, not live: every cell is greyed

    # -- Qt model interface ---------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._ncols

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        # Views ask each visible cell for several roles per paint: unserved ones leave first, and
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
                return STALE_BRUSH
            return BRUSHES.get(as_text(col.value(rows[r]))) if col.colored else None
        if role == SORT_ROLE:
            return col.sort_key(self.value(r, c))
        if role == KEY_ROLE:
            return rows[r].get(self.KEY)
        if role == ROW_ROLE:
            return rows[r]
        if role == TOOLTIP:
            return self.tooltip(cast(RowT, rows[r]), col)
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

    def tooltip(self, row: RowT, col: Column) -> str | None:
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
        return COLORS.get(as_text(col.value(self._rows[r])))

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

    def row(self, key: str) -> RowT | None:
        i = self._index.get(key)
        return None if i is None else cast(RowT, self._rows[i])

    def row_at(self, i: int) -> RowT:
        return cast(RowT, self._rows[i])

    def key_at(self, i: int) -> str:
        return str(self._rows[i][self.KEY])

    def row_of(self, key: str) -> int:
        return self._index.get(key, -1)

    def rows(self) -> list[RowT]:
        return cast("list[RowT]", list(self._rows))

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

    # -- order ----------------------------------------------------------------------------

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
        if col.numeric:  # numbers compare as floats; missing ones (and NaN) as -1
            keys: list[float] | list[str] = [
                v if (type(v) is float and v == v) or type(v) is int else -1.0 for v in values
            ]
        else:
            keys = ["" if v is None else str(v).lower() for v in values]
        order = sorted(range(len(rows)), key=keys.__getitem__, reverse=descending)
        return [rows[i] for i in order]

    def _reindex(self) -> None:
        k = self.KEY
        self._index = {str(r[k]): i for i, r in enumerate(self._rows)}
