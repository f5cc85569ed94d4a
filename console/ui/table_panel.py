"""A toolbar, a filter box and a sortable table over a `RowTableModel`: every page's table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from PySide6.QtCore import QItemSelectionModel, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from console import fmt
from console.models.base import RowTableModel
from console.models.cached_rows import RowT
from console.models.filter_proxy import FilterProxy
from console.ui import common
from console.ui.common import Notice, SearchBox, Shortcut, make_action
from console.ui.tableview import TableView


class TablePanel(QWidget, Generic[RowT]):
    """The table of a page: actions enabled by the selection, a filter, remembered widths."""

    selection_changed = Signal()

    def __init__(
        self,
        model: RowTableModel[RowT],
        name: str,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
        filter_hint: str = "Filter (any column)…",
        sort: tuple[str | int, Qt.SortOrder] | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.name = name
        self.settings = settings
        self.proxy = FilterProxy(model, self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        top.addWidget(self.toolbar, 1)
        self.filter = SearchBox()
        self.filter.setPlaceholderText(filter_hint)
        self.filter.setClearButtonEnabled(True)
        self.filter.setMaximumWidth(320)
        self.filter.textChanged.connect(self.proxy.set_text)
        top.addWidget(self.filter)
        lay.addLayout(top)
        self.notice = Notice()
        lay.addWidget(self.notice)
        self.view = self._make_view(name, sort)
        lay.addWidget(self.view, 1)
        make_action(self, "Filter", self._focus_filter, QKeySequence.StandardKey.Find)
        self._enablers: list[tuple[QAction, Callable[[list[RowT]], bool]]] = []
        model.content_changed.connect(self._enable)
        self._sized = False
        self._shown = False
        model.modelReset.connect(self._size_columns)
        # A reload (F5, a reconnect) keeps what the user selected, where those rows remain.
        self._kept: list[str] = []
        model.modelAboutToBeReset.connect(lambda: setattr(self, "_kept", self.selected_keys()))
        model.modelReset.connect(self._reselect)
        model.rowsInserted.connect(lambda *_: self._size_columns() if len(model) <= 200 else None)
        self.restore()

    def _make_view(self, name: str, sort: tuple[str | int, Qt.SortOrder] | None) -> TableView:
        view = TableView()
        view.setObjectName(f"{name}Table")
        view.setModel(self.proxy)
        view.setSortingEnabled(True)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        # Fixed row heights: the view never asks the model for size hints per row.
        view.verticalHeader().hide()
        view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        view.verticalHeader().setDefaultSectionSize(24)
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        column, order = sort if sort is not None else (0, Qt.SortOrder.AscendingOrder)
        view.sortByColumn(self.model.column(column) if isinstance(column, str) else column, order)
        view.paint_rows_of(self.proxy)
        view.selectionModel().selectionChanged.connect(lambda *_: self.selection_changed.emit())
        return view

    def _focus_filter(self) -> None:
        self.filter.setFocus()
        self.filter.selectAll()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown:  # sized again now that the style sheet's font applies
            self._shown = True
            self._size_columns()

    def _size_columns(self) -> None:
        # Fit the columns to the first screenful of a (re)load, until the user's own widths
        # were restored; sizing looks at the visible rows only, so 10,000 rows cost nothing.
        # Empty, each column is as wide as its title (a narrow one clipped "Acknowledged").
        if not self._sized and not self.model.rowCount():
            header = self.view.horizontalHeader()
            self.view.ensurePolished()
            for c in range(self.model.columnCount()):
                if self.view.columnWidth(c) < header.sectionSizeHint(c):
                    self.view.setColumnWidth(c, header.sectionSizeHint(c))
        if not self._sized and self.model.rowCount():
            self.view.ensurePolished()  # measure with the font the style sheet gives
            self.view.resizeColumnsToContents()
            date = self.view.fontMetrics().horizontalAdvance("2026-11-28 03:45:12") + 12
            for c, col in enumerate(self.model.COLUMNS):
                # Live figures grow after the first fill: numeric columns get room for them,
                # and times, which a first fill may not have had yet, room for a whole one.
                floor = 96 if col.numeric else date if col.fmt is fmt.when else 60
                self.view.setColumnWidth(c, min(max(self.view.columnWidth(c), floor), 320))

    def add_action(
        self,
        text: str,
        slot: Callable[[], Any],
        shortcut: Shortcut | None = None,
        needs_selection: bool = True,
        enabled_when: Callable[[list[RowT]], bool] | None = None,
    ) -> QAction:
        """A toolbar button with a shortcut. With `needs_selection` it is enabled while rows are
        selected (and, given `enabled_when(selected rows)`, while that holds too)."""
        act = make_action(self, text, slot, shortcut)
        self.toolbar.addAction(act)
        if needs_selection or enabled_when is not None:
            self._enablers.append((act, enabled_when or bool))
            act.setEnabled(False)
            self.selection_changed.connect(self._enable)
        return act

    def _enable(self) -> None:
        if not self._enablers:
            return
        rows = self.selected_rows()
        for act, when in self._enablers:
            act.setEnabled(bool(rows) and when(rows))

    def _reselect(self) -> None:
        kept, self._kept = self._kept, []
        model = self.view.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        for n, key in enumerate(k for k in kept if self.model.row_of(k) >= 0):
            idx = self.proxy.mapFromSource(self.model.index(self.model.row_of(key), 0))
            if n == 0:
                model.setCurrentIndex(idx, flags.ClearAndSelect | flags.Rows)
            else:
                model.select(idx, flags.Select | flags.Rows)

    def selected_keys(self) -> list[str]:
        rows = {i.row() for i in self.view.selectionModel().selectedRows()}
        return [self.proxy.key_at(r) for r in sorted(rows)]

    def selected_rows(self) -> list[RowT]:
        return [r for k in self.selected_keys() if (r := self.model.row(k)) is not None]

    def confirm_first(
        self, title: str, question: Callable[[RowT], str], then: Callable[[str], object]
    ) -> QMessageBox | None:
        """Ask `question(row)` of the first selected row; `then(its key)` if the user agrees.
        None when nothing is selected."""
        keys = self.selected_keys()
        row = self.model.row(keys[0]) if keys else None
        if row is None:
            return None
        key = keys[0]
        return common.confirm(self, title, question(row), lambda: then(key))  # one seam for tests

    def select_key(self, key: str) -> None:
        src = self.model.row_of(key)
        if src < 0:
            return
        idx = self.proxy.mapFromSource(self.model.index(src, 0))
        # Not `selectRow`: it toggles the row when Ctrl is held (a shortcut's modifier).
        flags = QItemSelectionModel.SelectionFlag
        self.view.selectionModel().setCurrentIndex(idx, flags.ClearAndSelect | flags.Rows)

    def save(self) -> None:
        if self.settings is not None:
            self.settings.setValue(f"tables/{self.name}", self.view.horizontalHeader().saveState())

    def restore(self) -> None:
        if self.settings is not None:
            state = self.settings.value(f"tables/{self.name}")
            if state is not None:
                self.view.horizontalHeader().restoreState(state)
                self._sized = True
