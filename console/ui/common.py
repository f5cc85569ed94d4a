"""Pieces every page uses: a filterable table, banners, confirmations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from console import fmt
from console.models.base import FilterProxy, RowTableModel
from console.ui.tableview import TableView


def confirm(parent: QWidget | None, title: str, text: str, destructive: bool = True) -> bool:
    """Ask before a destructive action. Tests replace this function to answer by themselves."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    yes = box.addButton(title, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is yes


class Notice(QLabel):
    """A one-line notice: "not available on this master", "only admins", empty states."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setObjectName("notice")
        self.setWordWrap(True)
        self.setVisible(bool(text))

    def say(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


class Banner(QWidget):
    """The strip at the top of the window: master unreachable, or the latest error."""

    closed = Signal()

    def __init__(
        self, object_name: str, closable: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 6, 8, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        if closable:
            close = QPushButton("Dismiss")
            close.setObjectName("bannerButton")
            close.clicked.connect(self.dismiss)
            lay.addWidget(close)
        self.hide()

    def say(self, text: str) -> None:
        self.label.setText(text)
        self.setVisible(bool(text))

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()


def page_title(text: str) -> QLabel:
    """The heading every page starts with (styled by `#pageTitle` in the style sheet)."""
    label = QLabel(text)
    label.setObjectName("pageTitle")
    return label


class TablePanel(QWidget):
    """A toolbar, a filter box and a sortable table over a `RowTableModel`."""

    selection_changed = Signal()

    def __init__(
        self,
        model: RowTableModel,
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
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(filter_hint)
        self.filter.setClearButtonEnabled(True)
        self.filter.setMaximumWidth(320)
        self.filter.textChanged.connect(self.proxy.set_text)
        top.addWidget(self.filter)
        lay.addLayout(top)
        self.notice = Notice()
        lay.addWidget(self.notice)
        self.view = TableView()
        self.view.setObjectName(f"{name}Table")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        # Fixed row heights: the view never asks the model for size hints per row.
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setDefaultSectionSize(24)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        column, order = sort if sort is not None else (0, Qt.SortOrder.AscendingOrder)
        self.view.sortByColumn(model.column(column) if isinstance(column, str) else column, order)
        self.view.paint_rows_of(self.proxy)
        self.view.selectionModel().selectionChanged.connect(
            lambda *_: self.selection_changed.emit()
        )
        lay.addWidget(self.view, 1)
        find = QAction("Filter", self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        find.triggered.connect(self._focus_filter)
        self.addAction(find)
        self._sized = False
        self._shown = False
        model.modelReset.connect(self._size_columns)
        model.rowsInserted.connect(lambda *_: self._size_columns() if len(model) <= 200 else None)
        self.restore()

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
        shortcut: str | QKeySequence.StandardKey | None = None,
        needs_selection: bool = True,
    ) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        act.triggered.connect(slot)
        self.toolbar.addAction(act)
        self.addAction(act)
        if needs_selection:
            act.setEnabled(False)
            self.selection_changed.connect(lambda: act.setEnabled(bool(self.selected_keys())))
        return act

    def selected_keys(self) -> list[str]:
        rows = {i.row() for i in self.view.selectionModel().selectedRows()}
        return [self.proxy.key_at(r) for r in sorted(rows)]

    def selected_rows(self) -> list[dict[str, Any]]:
        return [r for k in self.selected_keys() if (r := self.model.row(k)) is not None]

    def select_key(self, key: str) -> None:
        src = self.model.row_of(key)
        if src < 0:
            return
        idx = self.proxy.mapFromSource(self.model.index(src, 0))
        self.view.selectRow(idx.row())

    def save(self) -> None:
        if self.settings is not None:
            self.settings.setValue(f"tables/{self.name}", self.view.horizontalHeader().saveState())

    def restore(self) -> None:
        if self.settings is not None:
            state = self.settings.value(f"tables/{self.name}")
            if state is not None:
                self.view.horizontalHeader().restoreState(state)
                self._sized = True
