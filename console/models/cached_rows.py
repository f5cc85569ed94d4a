"""Rows keyed by id as Qt views read them: each cell's text formatted once and cached, live
figures apart from the rows, and the model's own sorting.

What a cell shows is formatted when a view first asks for it and cached (per row for the
ordinary columns, per sample for the live ones), so `data()` is a lookup and a tick formats
only the cells that are visible and changed. Sorting is a key function over cached values
(`sort()`, reached through the proxy), not `QSortFilterProxyModel`'s comparisons, which would
call `data()` twice per comparison. When the sorted column changes, small tables re-sort at the
next tick and large ones on a slower timer; a re-sort reads again only the keys of the rows that
changed since the last one and merges them in (row_order.py).

A re-sort is a layout change, unless every view behind the model keeps its selection by key
itself (`add_reorder_check`): then it is one `dataChanged` over every row, which spares the views,
headers and scroll bars their layout pass and a full repaint.

By a live column, with the stream thread attached (`attach_order`), the stream thread works the
new order out and a re-sort swaps it in (live_order.py); a due re-sort waits a little for it
while a burst of samples is still arriving. The new figures, and rows changed meanwhile, wait
with it, and changes queued when it comes are applied with it: the view repaints once, with the
new order, figures and rows, instead of those first and every row again after.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, Generic, TypeVar, cast

from PySide6.QtCore import (
    QAbstractTableModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
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
from console.models.live_order import LiveOrder, OrderRequest, ReadyOrder, live_sort_keys
from console.models.row_order import Key, full_order, merged_order, sort_keys, worth_merging

Index = QModelIndex | QPersistentModelIndex
RowT = TypeVar("RowT", bound=Mapping[str, Any])  # the row type of a table (models/rows.py)
_SERVED_ROLES = frozenset(
    {DISPLAY, ALIGN, FOREGROUND, TOOLTIP, KEY_ROLE, ROW_ROLE, SORT_ROLE, FILTER_ROLE}
)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_ASC = Qt.SortOrder.AscendingOrder

SMALL_TABLE = 2000  # rows; up to this many, a changed sort column re-sorts at the next tick
RESORT_MS = 2000  # larger tables re-sort at most this often while the sorted column changes
ORDER_WAIT = 1.0  # seconds a due re-sort may wait for the stream thread's order
ORDER_POLL_MS = 40  # how often it looks whether that order came
MAX_RUNS = 8  # runs of changed rows signalled apart; more: one signal over their range


class CachedRows(QAbstractTableModel, Generic[RowT]):
    COLUMNS: Sequence[Column] = ()
    KEY = "id"
    # A re-sort moves rows without a layout change: views that keep their selection by key
    # note it before (about_to_reorder) and put it back after (reordered).
    about_to_reorder = Signal()
    reordered = Signal()  # rows moved by a re-sort (either way)

    def __init__(self, parent: Any = None, resort_ms: int = RESORT_MS) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._keys: list[str] = []  # each row's key, in row order
        self._index: dict[str, int] = {}  # key -> row
        # The order's bookkeeping: each row's sort key as of the last sort (in row order), and
        # the rows whose key may have changed since (None: any row, sort them all again).
        self._sort_keys: list[Key | None] = []
        self._unsorted: set[str] | None = None
        self._texts: dict[str, list[str]] = {}  # key -> shown text per column (live ones "")
        self._hay: dict[str, str] = {}  # key -> lower-case text of the row, for filters
        self._live: dict[str, Row] = {}  # key -> newest live sample
        self._live_texts: dict[str, tuple[Row, list[str]]] = {}  # key -> (sample, texts)
        # The stream thread's work on the order by a live column (live_order.py): what was
        # asked of it. `_rows` and `_keys` are never changed in place once asked: new lists.
        self._live_order: LiveOrder | None = None
        self._order_request: OrderRequest | None = None
        self.ready_resorts = 0  # re-sorts that took an order the stream thread computed
        self._edited: set[str] = set()  # rows whose samples this thread changed itself since
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
        self._resort_timer.timeout.connect(self._resort_due)
        # While the stream thread is about to deliver the order, a due re-sort waits for it.
        self._order_timer = QTimer(self)
        self._order_timer.setSingleShot(True)
        self._order_timer.timeout.connect(self._resort_due)
        self._due_at: float | None = None  # when the re-sort waiting for it became due
        # Not signalled yet, because the re-sort that is due signals every row: new figures,
        # and rows changed meanwhile (by key: rows may come and go before it).
        self._live_held = False
        self._held_rows: set[str] = set()
        self._resorted_at = 0.0
        self.resorts = 0  # how many times the order was brought up to date
        self.stale = False  # the last known state, not live: every cell is greyed
        # Who must agree before a re-sort goes without a layout change (see add_reorder_check).
        self._reorder_checks: list[weakref.WeakMethod[Callable[[], bool]]] = []

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
        self._unsorted = None  # every key is read again for the new column
        self._order_request = None  # an order the stream thread computed is by the old one
        self.resort()
        if self._order_request is None:
            self._ask_order()

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
        return self._keys[i]

    def row_of(self, key: str) -> int:
        return self._index.get(key, -1)

    def rows(self) -> list[RowT]:
        return cast("list[RowT]", list(self._rows))

    def key_list(self) -> list[str]:
        return list(self._keys)

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
            self._resort_when_ready()
        elif not self._resort_timer.isActive():
            self._resort_timer.start(int((interval - since) * 1000) + 500)

    def _resort_due(self) -> None:
        """The re-sort timer or the wait for the stream thread's order is over."""
        self._resort_when_ready()

    def _resort_when_ready(self) -> None:
        """Re-sort now, or a moment later when the stream thread is still working the order
        out (a burst of samples not over yet), for at most `ORDER_WAIT` seconds."""
        now = time.monotonic()
        if self._due_at is None:
            self._due_at = now
        order = self._live_order
        if (
            now - self._due_at < ORDER_WAIT
            and order is not None
            and order.attended
            and self._order_request is not None
            and self._ready_order() is None
        ):
            if not self._order_timer.isActive():
                self._order_timer.start(ORDER_POLL_MS)
            return
        self.resort()

    @property
    def awaiting_order(self) -> bool:
        """A due re-sort waits for the order the stream thread is working out."""
        return self._order_timer.isActive()

    def _release_live(self) -> None:
        """Signal the live columns and the rows held for a re-sort that moved nothing."""
        if self._held_rows:
            index = self._index
            held = [i for k in self._held_rows if (i := index.get(k)) is not None]
            self._held_rows = set()
            if held:
                self._emit_changed(held, 0, self._ncols - 1, (DISPLAY, FOREGROUND, TOOLTIP))
        if self._live_held:
            self._live_held = False
            if self._rows and self._live_cols:
                first, last = self._live_cols[0], self._live_cols[-1]
                self.dataChanged.emit(
                    self.index(0, first), self.index(len(self._rows) - 1, last), [DISPLAY]
                )

    def _emit_changed(
        self,
        rows: list[int],
        first_col: int,
        last_col: int,
        roles: Sequence[int],
        gap: int = 16,
    ) -> None:
        """Signal these rows' columns, one `dataChanged` per run of rows close together; rows
        scattered over more than `MAX_RUNS` runs get one signal over their whole range (each
        signal costs the proxy and every view a call; views repaint only what they show)."""
        rows.sort()
        runs: list[tuple[int, int]] = []
        start = prev = rows[0]
        for i in rows[1:]:
            if i - prev > gap:
                runs.append((start, prev))
                start = i
            prev = i
        runs.append((start, prev))
        if len(runs) > MAX_RUNS:
            runs = [(rows[0], rows[-1])]
        roles_list = list(roles)
        for top, bottom in runs:
            self.dataChanged.emit(
                self.index(top, first_col), self.index(bottom, last_col), roles_list
            )

    @property
    def order_stale(self) -> bool:
        """Rows may be out of order: a re-sort is due."""
        return self.sort_column >= 0 and (self._unsorted is None or bool(self._unsorted))

    def _unsort(self, keys: Iterable[str] | None) -> None:
        """These rows' sort keys may have changed (None: any row's)."""
        if self.sort_column < 0:
            return
        if keys is None:
            self._unsorted = None
        elif self._unsorted is not None:
            self._unsorted.update(keys)

    def add_reorder_check(self, check: Callable[[], bool]) -> None:
        """`check` (a bound method, held weakly) says whether what sits behind it takes a
        re-sort as a change of every row's data: nothing there holds a row by its position, or
        what does puts it back by key on `reordered`. A re-sort is a layout change unless every
        check agrees and nothing holds an index of this model."""
        self._reorder_checks.append(weakref.WeakMethod(check))

    def _quiet_reorder(self) -> bool:
        for ref in list(self._reorder_checks):
            check = ref()
            try:
                if check is not None and not check():
                    return False
            except RuntimeError:  # its Qt object is gone
                check = None
            if check is None:
                self._reorder_checks.remove(ref)
        return not self.persistentIndexList()

    def resort(self) -> None:
        """Bring the order up to date with the sort column (selection kept on its rows)."""
        self._resort_timer.stop()
        self._order_timer.stop()
        self._due_at = None
        self._resorted_at = time.monotonic()
        ready = self._ready_order()
        order = self._new_order() if ready is None else None
        if ready is not None:
            # Rows whose samples were edited here after the order was computed: merged in at
            # the next re-sort (by the stream thread's next order, or here).
            self._unsorted = set() if self._latest(ready) else set(self._edited)
            if not self._unsorted:
                self._edited.clear()
            self._retire(self._sort_keys)
            self._sort_keys = cast("list[Key | None]", ready.sort_keys)
            if not ready.moved:
                self._release_live()
                return
        elif order is None:
            self._release_live()
            return  # nothing moved: no layout change for views and proxies to redo
        self._live_held = False  # every row is signalled below
        self._held_rows = set()
        if self._quiet_reorder():
            self.about_to_reorder.emit()
            self._move(order, ready)
            last = self.index(len(self._rows) - 1, self._ncols - 1)
            self.dataChanged.emit(self.index(0, 0), last, [])
        else:
            self.layoutAboutToBeChanged.emit()
            persistent = self.persistentIndexList()
            held = [(self._keys[p.row()], p.column()) for p in persistent]
            self._move(order, ready)
            self.changePersistentIndexList(
                persistent, [self.index(self._index[key], col) for key, col in held]
            )
            self.layoutChanged.emit()
        self.resorts += 1
        self.reordered.emit()

    def _move(self, order: list[int] | None, ready: ReadyOrder | None) -> None:
        """Put the rows in their new order: the stream thread's, ready to swap in, or `order`
        (the old row of each new one)."""
        if ready is not None:
            self._retire((self._rows, self._keys, self._index, self._order_request))
            self._rows, self._keys, self._index = ready.rows, ready.keys, ready.index
            self.ready_resorts += 1
            self._ask_order(ready if self._latest(ready) else None)
            return
        assert order is not None
        self._rows = list(map(self._rows.__getitem__, order))
        self._keys = list(map(self._keys.__getitem__, order))
        self._reindex()
        self._ask_order()

    # -- the order computed on the stream thread ------------------------------------------

    def attach_order(self, order: LiveOrder) -> None:
        """Have the stream thread work out the order by a live column (`order` is fed by the
        writer of the samples this model reads; see attach_live)."""
        self._live_order = order
        self._ask_order()

    def _ask_order(self, ready: ReadyOrder | None = None) -> None:
        """Tell the stream thread what to sort now (after any change of the rows, their order,
        the samples' dict or the sort column). `ready`: just applied, so already in order."""
        order = self._live_order
        if order is None:
            return
        c = self.sort_column
        if c < 0 or not self.COLUMNS[c].live:
            self._order_request = None
            order.request(None)
            return
        request = OrderRequest(
            self._rows, self._keys, self._live, self.COLUMNS[c].key, self.sort_order != _ASC
        )
        self._order_request = request
        order.request(request, ready)

    def _ready_order(self) -> ReadyOrder | None:
        """The stream thread's order for the rows as they are, if it has one that moves rows
        (or is up to date with every edit here: then nothing moves)."""
        order, request = self._live_order, self._order_request
        ready = None if order is None or request is None else order.take(request)
        if ready is not None and not ready.moved and not self._latest(ready):
            return None  # rows edited here since: merged in here
        return ready

    def _retire(self, old: object) -> None:
        """Let the stream thread free what the old order held, when one attends."""
        order = self._live_order
        if order is not None and order.attended:
            order.retire(old)

    def _latest(self, ready: ReadyOrder) -> bool:
        return self._live_order is None or ready.edits == self._live_order.edits

    def _samples_changed(self, keys: Iterable[str]) -> None:
        """This thread changed these rows' samples itself (an order computed before may have
        them out of place)."""
        if self._live_order is not None:
            self._edited.update(keys)
            self._live_order.edit()

    def _order(self) -> None:
        """Sort the rows from scratch before views see them (inside a reset)."""
        self._keys = [str(r[self.KEY]) for r in self._rows]
        self._reindex()
        self._unsorted = None
        order = self._new_order()
        if order is not None:
            self._rows = list(map(self._rows.__getitem__, order))
            self._keys = list(map(self._keys.__getitem__, order))
            self._reindex()
        self._ask_order()

    def _new_order(self) -> list[int] | None:
        """The rows' new order (the old row of each new one) by the sort column, reading the
        keys of only the rows changed since the last sort when they are few; None: unchanged."""
        unsorted, self._unsorted = self._unsorted, set()
        self._edited.clear()  # read again below (or at the next flush, if not signalled yet)
        n = len(self._rows)
        if self.sort_column < 0:
            self._unsorted = None  # a later sort starts from scratch
            return None
        descending = self.sort_order != _ASC
        if unsorted is not None and worth_merging(len(unsorted), n):
            index = self._index
            changed = sorted(i for k in unsorted if (i := index.get(k)) is not None)
            if not changed:
                return None
            old = cast("list[Key]", self._sort_keys)  # only the changed rows' may be None
            order, keys = merged_order(old, changed, self._sort_keys_at(changed), descending)
        else:
            fresh = self._sort_keys_at(None)
            order = full_order(fresh, descending)
            keys = list(map(fresh.__getitem__, order))
        self._sort_keys = cast("list[Key | None]", keys)
        moved = order and (order[0] != 0 or order != list(range(n)))  # first: no list to make
        return order if moved else None

    def _sort_keys_at(self, rows: list[int] | None) -> list[Key]:
        """The sort keys of these rows (None: all), read in one pass in C where values allow."""
        c = self.sort_column
        col = self.COLUMNS[c]
        try:
            if col.live:  # a row without a sample reads as one without the figure
                keys = self._keys if rows is None else [self._keys[i] for i in rows]
                if col.numeric:
                    return live_sort_keys(self._live, keys, col.key)
                samples = map(self._live.get, keys, repeat({col.key: None}))
                values = list(map(itemgetter(col.key), samples))
            else:
                found = self._rows if rows is None else [self._rows[i] for i in rows]
                values = list(map(col.get or itemgetter(col.key), found))
        except KeyError:  # a sample or a row without the field
            values = [self.value(i, c) for i in (range(len(self._rows)) if rows is None else rows)]
        return sort_keys(values, col.numeric)

    def _reindex(self) -> None:
        self._index = dict(zip(self._keys, range(len(self._keys)), strict=True))
