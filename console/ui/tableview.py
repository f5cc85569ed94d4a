"""The table view of every page, cheap enough for a large table with live figures every tick.

Two things Qt's `QTableView` does not do here:
- a `dataChanged` that reaches past the viewport makes Qt repaint a band as wide as the whole
  table; here the dirty rectangle is clipped to the visible rows and the changed columns;
- over a `RowTableModel` this view paints the cells itself, one pass per paint event, from the
  model's cached texts and widths (Qt's delegate asks the Python model once per role per cell).
  The model still answers every role for other views, tooltips and accessibility;
- it keeps its selection and current row on their items by key across a re-sort, so the model
  can re-sort without a layout change (no layout pass, header or scroll bar repaint).
Cells are drawn with the view's font without shaping (`QFont.PreferNoShaping`): Latin text
is only mapped to glyphs, without kerning or ligatures, which makes a cell's text and its width
cheaper (scripts that need shaping are still shaped).
`paint_seconds` adds up the GUI thread's CPU time spent painting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPalette, QRegion
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem, QTableView, QWidget

from console.models.base import RowTableModel
from console.models.cells import STALE_COLOR
from console.models.filter_proxy import FilterProxy

MARGIN = 3  # pixels between a cell's text and its edge: Qt's delegate leaves (and sizes for) 3
MAX_TEXTS = 8192  # distinct strings whose width is kept
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)


class TableView(QTableView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paint_seconds = 0.0
        self.paints = 0
        self._proxy: FilterProxy | None = None
        # The font cells are drawn with, made from the view's, and its widths of texts drawn.
        self._font_of: QFont | None = None
        self._font = QFont()
        self._metrics = QFontMetrics(self._font)
        self._widths: dict[str, int] = {}
        self._selected: set[int] = set()  # proxy rows
        # Across a re-sort: the selected (key, first column, last column) and the current cell.
        self._held: tuple[list[tuple[str, int, int]], tuple[str, int] | None] | None = None

    def paint_rows_of(self, proxy: FilterProxy) -> None:
        """Paint the cells of `proxy.source` here (call after `setModel(proxy)`)."""
        self._proxy = proxy
        self.selectionModel().selectionChanged.connect(self._selection)
        for sig in (proxy.layoutChanged, proxy.modelReset, proxy.rowsInserted, proxy.rowsRemoved):
            sig.connect(self._selection)
        proxy.source.about_to_reorder.connect(self._hold_selection)
        proxy.source.reordered.connect(self._restore_selection)
        proxy.keeps_selection_by_key = True
        # The rows paint their own background: the viewport's fill would be painted over.
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def _selection(self, *_: object) -> None:
        self._selected = {i.row() for i in self.selectionModel().selectedRows()}

    def _hold_selection(self) -> None:
        """Note the selected and current items by key: their rows are about to move."""
        proxy, sel = self._proxy, self.selectionModel()
        assert proxy is not None
        key_at = proxy.source.key_at  # no filter (or no quiet re-sort): proxy rows are its rows
        held = [
            (key_at(r), rng.left(), rng.right())
            for rng in sel.selection().toList()
            for r in range(rng.top(), rng.bottom() + 1)
        ]
        current = sel.currentIndex()
        here = (key_at(current.row()), current.column()) if current.isValid() else None
        self._held = (held, here)

    def _restore_selection(self) -> None:
        """Select the held items again at their new rows, without signals: for whoever listens
        the selection did not change (as after a layout change)."""
        if self._held is None:
            return
        held, here = self._held
        self._held = None
        proxy, sel = self._proxy, self.selectionModel()
        assert proxy is not None
        source = proxy.source
        cells = sorted((source.row_of(k), a, b) for k, a, b in held if source.row_of(k) >= 0)
        selection = QItemSelection()
        start = 0
        for n in range(1, len(cells) + 1):  # contiguous rows over the same columns: one range
            r, a, b = cells[n - 1]
            if n < len(cells) and cells[n] == (r + 1, a, b):
                continue
            selection.select(proxy.index(cells[start][0], a), proxy.index(r, b))
            start = n
        blocked = sel.blockSignals(True)
        try:
            sel.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            if here is not None and source.row_of(here[0]) >= 0:
                current = proxy.index(source.row_of(here[0]), here[1])
                sel.setCurrentIndex(current, QItemSelectionModel.SelectionFlag.NoUpdate)
        finally:
            sel.blockSignals(blocked)
        self._selection()

    # -- what to repaint ------------------------------------------------------------------

    def dataChanged(
        self,
        top_left: QModelIndex | QPersistentModelIndex,
        bottom_right: QModelIndex | QPersistentModelIndex,
        roles: Sequence[int] = (),
    ) -> None:
        if top_left == bottom_right or not self.isVisible():
            super().dataChanged(top_left, bottom_right, list(roles))
            return
        viewport = self.viewport()
        first = max(top_left.row(), self.rowAt(0), 0)
        last_visible = self.rowAt(viewport.height() - 1)
        last = bottom_right.row() if last_visible < 0 else min(bottom_right.row(), last_visible)
        if first > last:
            return  # nothing of it is in view
        xs = [
            (self.columnViewportPosition(c), self.columnWidth(c))
            for c in range(top_left.column(), bottom_right.column() + 1)
            if not self.isColumnHidden(c)
        ]
        if not xs:
            return
        left = min(x for x, _ in xs)
        right = max(x + w for x, w in xs)
        top = self.rowViewportPosition(first)
        bottom = self.rowViewportPosition(last) + self.rowHeight(last)
        viewport.update(QRect(left, top, right - left, bottom - top))

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        start = time.thread_time()
        if self._proxy is None:
            super().paintEvent(event)
        else:
            region = event.region()
            covered = self._paint(region)
            self._fill_rest(region if covered is None else region.subtracted(covered))
        self.paint_seconds += time.thread_time() - start
        self.paints += 1

    def _colors(self) -> tuple[QColor, QColor, QColor, QColor, QColor, QColor]:
        pal = self.palette()
        option = QStyleOptionViewItem()
        option.initFrom(self)
        grid = self.style().styleHint(QStyle.StyleHint.SH_Table_GridLineColor, option, self)
        return (
            pal.color(QPalette.ColorRole.Base),
            pal.color(QPalette.ColorRole.AlternateBase),
            pal.color(QPalette.ColorRole.Highlight),
            pal.color(QPalette.ColorRole.Text),
            pal.color(QPalette.ColorRole.HighlightedText),
            QColor.fromRgba(grid & 0xFFFFFFFF) if grid != -1 else pal.color(QPalette.ColorRole.Mid),
        )

    def paint_font(self) -> tuple[QFont, QFontMetrics, dict[str, int]]:
        """The font cells are drawn with, its metrics and its cache of text widths (emptied
        when the view's font changes)."""
        font = self.font()
        if font != self._font_of:
            self._font_of = QFont(font)
            self._font = QFont(font)
            self._font.setStyleStrategy(QFont.StyleStrategy.PreferNoShaping)
            self._metrics = QFontMetrics(self._font)
            self._widths = {}
        return self._font, self._metrics, self._widths

    def _fill_rest(self, region: QRegion) -> None:
        """Fill what no row covered (below the last row, right of the last column) as the
        viewport's own background fill would have."""
        if region.isEmpty():
            return
        viewport = self.viewport()
        painter = QPainter(viewport)
        painter.setClipRegion(region)
        painter.fillRect(region.boundingRect(), viewport.palette().brush(viewport.backgroundRole()))
        painter.end()

    def _paint(self, region: QRegion) -> QRegion | None:
        """Paint the visible cells in `region`; returns the area painted (None: nothing). One
        long function on purpose: the paint hot path keeps its locals in one frame rather than
        paying for calls per row."""
        proxy = self._proxy
        assert proxy is not None
        model: RowTableModel[Any] = proxy.source
        box = region.boundingRect()
        first = self.rowAt(box.top())
        if first < 0:
            return None
        last = self.rowAt(box.bottom())
        if last < 0:
            last = proxy.rowCount() - 1
        width = self.viewport().width()
        live_slot = {c: n for n, c in enumerate(model.live_columns)}
        colored = set(model.colored_columns) if not model.stale else set()
        right = model.right_aligned
        line = 1 if self.showGrid() else 0
        # Per visible column: where it is, the room for its text, and where its text comes from
        # (the live slot, or -1 for the row's cached texts).
        cols = []
        for c in range(model.columnCount()):
            if self.isColumnHidden(c):
                continue
            x, w = self.columnViewportPosition(c), self.columnWidth(c)
            if w > 0 and x + w > box.left() and x <= box.right() and x < width:
                room = w - line - 2 * MARGIN
                cols.append((c, x, w, room, right[c], live_slot.get(c, -1), c in colored))
        if not cols:
            return None
        live = bool(live_slot)
        base, alternate, highlight, text, selected_text, grid = self._colors()
        if model.stale:  # not live: greyed, no state colors
            text = selected_text = QColor(STALE_COLOR)
        alternating = self.alternatingRowColors()
        filtering = proxy.filtering
        selected = self._selected
        font, metrics, widths = self.paint_font()
        width_of = widths.get
        advance = metrics.horizontalAdvance
        row_height = self.verticalHeader().defaultSectionSize()
        baseline = (row_height - line - metrics.height()) // 2 + metrics.ascent()
        painter = QPainter(self.viewport())
        painter.setClipRegion(region)
        painter.setFont(font)
        draw, fill, set_pen = painter.drawText, painter.fillRect, painter.setPen
        current: QColor | None = None  # the pen's color now
        top = self.rowViewportPosition(first)
        bottom = self.rowViewportPosition(last) + self.rowHeight(last)
        left, end = cols[0][1], cols[-1][1] + cols[-1][2]
        if line:  # the lines between rows show through; those between columns come below
            fill(QRect(left, top, end - left, bottom - top), grid)
        rows = []
        # Rows of one height, none hidden (the tables' fixed rows): positions without asking.
        uniform = bottom - top == (last - first + 1) * row_height
        position, height = self.rowViewportPosition, self.rowHeight
        for r in range(first, last + 1):
            if uniform:
                y, h = top + (r - first) * row_height, row_height
            else:
                y, h = position(r), height(r)
            is_selected = r in selected
            stripe = alternate if alternating and r & 1 else base
            background = highlight if is_selected else stripe
            fill(QRect(left, y, end - left, h - line), background)
            rows.append((r, y, h, is_selected))
        if line:
            for _, x, w, *_ in cols:
                fill(QRect(x + w - line, top, line, bottom - top), grid)
        texts_at, live_texts_at, color_at = model.texts_at, model.live_texts_at, model.color_at
        for r, y, h, is_selected in rows:
            src = r if not filtering else proxy.mapToSource(proxy.index(r, 0)).row()
            texts = texts_at(src)
            figures = live_texts_at(src) if live else texts
            pen = selected_text if is_selected else text
            ty = y + baseline
            for c, x, w, room, at_right, slot, is_colored in cols:
                shown = figures[slot] if slot >= 0 else texts[c]
                if not shown:
                    continue
                color = pen
                if is_colored and not is_selected:
                    color = color_at(src, c) or pen
                if color is not current:
                    set_pen(color)
                    current = color
                tw = width_of(shown)
                if tw is None:
                    if len(widths) >= MAX_TEXTS:
                        widths.clear()
                    tw = widths[shown] = advance(shown)
                if tw <= room:
                    draw(x + w - line - MARGIN - tw if at_right else x + MARGIN, ty, shown)
                    continue
                # Too wide for its cell: elided, as Qt's delegate would.
                elided = metrics.elidedText(shown, Qt.TextElideMode.ElideRight, room)
                draw(QRect(x + MARGIN, y, room, h - line), _RIGHT if at_right else _LEFT, elided)
        painter.end()
        return QRegion(QRect(left, top, end - left, bottom - top))
