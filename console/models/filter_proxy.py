"""The proxy between a `RowTableModel` and its view: it filters; the model sorts itself."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer

from console.models.base import RowTableModel
from console.models.cells import DISPLAY, FILTER_ROLE

_ASC = Qt.SortOrder.AscendingOrder


class FilterProxy(QSortFilterProxyModel):
    """Filters on the rows' text; sorting is the source model's own (see RowTableModel.sort).

    Nothing here is Python on the paint path or while no filter is set: Qt's own filter
    accepts every row at once for an empty pattern. A filter asks the source for one cached
    string per row (`FILTER_ROLE`: every column but the live figures), or for one column's text.
    Not dynamic: the proxy never re-sorts or re-filters on `dataChanged` (a tick of live
    figures would otherwise re-filter 10,000 rows); content changes re-apply an active filter
    on a short timer instead.
    """

    def __init__(
        self, source: RowTableModel[Any], parent: Any = None, refilter_ms: int = 300
    ) -> None:
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
        # Its view puts its selection back by key after a re-sort (TableView does).
        self.keeps_selection_by_key = False
        source.add_reorder_check(self.takes_quiet_reorder)

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

    def takes_quiet_reorder(self) -> bool:
        """A re-sort may come as a change of every row's data: proxy rows are source rows, and
        nothing holds a row by position, or the view puts its selection back by key."""
        return not self.filtering and (
            self.keeps_selection_by_key or not self.persistentIndexList()
        )

    def _content_changed(self) -> None:
        if self.filtering and not self._refilter.isActive():
            self._refilter.start()

    def sort(self, column: int, order: Qt.SortOrder = _ASC) -> None:
        self.source.sort(column, order)

    def key_at(self, proxy_row: int) -> str:
        src = self.mapToSource(self.index(proxy_row, 0))
        return self.source.key_at(src.row())
