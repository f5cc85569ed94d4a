"""Pieces every page uses: actions, a filterable table, banners, confirmations, file pickers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QItemSelectionModel, QSettings, Qt, Signal, SignalInstance
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
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
from console.models.base import FilterProxy, Row, RowTableModel
from console.ui.tableview import TableView

Shortcut = str | QKeySequence.StandardKey


def on_trigger(signal: SignalInstance, slot: Callable[[], object]) -> None:
    """Connect `triggered`/`clicked`/`activated` to a slot called with no arguments.

    Those signals pass `checked` (a bool): a slot whose first parameter is optional would take
    it for its argument. Every action and button of the console is wired through here."""
    signal.connect(lambda *_: slot())


def make_action(
    owner: QWidget,
    text: str,
    slot: Callable[[], object],
    shortcut: Shortcut | None = None,
    context: Qt.ShortcutContext = Qt.ShortcutContext.WidgetWithChildrenShortcut,
) -> QAction:
    """An action of `owner` (its shortcut works while the focus is inside `owner`)."""
    act = QAction(text, owner)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
        act.setShortcutContext(context)
    on_trigger(act.triggered, slot)
    owner.addAction(act)
    return act


# What a line edit keeps for itself when a Ctrl/Alt key is also a shortcut: editing, clipboard.
_EDITING_KEYS = (
    QKeySequence.StandardKey.Copy,
    QKeySequence.StandardKey.Cut,
    QKeySequence.StandardKey.Paste,
    QKeySequence.StandardKey.Undo,
    QKeySequence.StandardKey.Redo,
    QKeySequence.StandardKey.SelectAll,
    QKeySequence.StandardKey.DeleteStartOfWord,
    QKeySequence.StandardKey.DeleteEndOfWord,
    QKeySequence.StandardKey.MoveToNextWord,
    QKeySequence.StandardKey.MoveToPreviousWord,
    QKeySequence.StandardKey.SelectNextWord,
    QKeySequence.StandardKey.SelectPreviousWord,
)
_COMMAND_MODIFIERS = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier


class SearchBox(QLineEdit):
    """A line edit that leaves Ctrl/Alt keys to the window's shortcuts (Ctrl+U uploads, it does
    not clear the line); typing, editing and the clipboard keys stay its own."""

    def event(self, e: QEvent) -> bool:
        if (
            e.type() == QEvent.Type.ShortcutOverride
            and isinstance(e, QKeyEvent)
            and e.modifiers() & _COMMAND_MODIFIERS
            and not any(e.matches(k) for k in _EDITING_KEYS)
        ):
            e.ignore()  # not claimed: a shortcut takes it, or it comes back as a key press
            return True
        return super().event(e)


def confirm(
    parent: QWidget | None,
    title: str,
    text: str,
    then: Callable[[], object],
    destructive: bool = True,
) -> QMessageBox:
    """Ask before an action; `then()` runs if the user agrees. The box does not block (it is
    window-modal): tests find it among the top-level widgets and click its buttons."""
    box = QMessageBox(parent)
    box.setObjectName("confirmBox")
    box.setIcon(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    yes = box.addButton(title, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda button: then() if button is yes else None)
    box.open()
    return box


def _file_dialog(
    parent: QWidget,
    title: str,
    name_filter: str,
    settings: QSettings | None,
    key: str,
    then: Callable[[list[str]], object],
    save: bool,
) -> QFileDialog:
    """Qt's own (not the platform's) file dialog, window-modal and not blocking, opened in the
    folder used last under `key` (else the home folder), which it then remembers."""
    folder = str(settings.value(key, "") or "") if settings is not None else ""
    start = folder if folder and Path(folder).is_dir() else str(Path.home())
    dlg = QFileDialog(parent, title, start, name_filter)
    dlg.setObjectName("saveFile" if save else "openFiles")
    dlg.setFileMode(QFileDialog.FileMode.AnyFile if save else QFileDialog.FileMode.ExistingFiles)
    dlg.setAcceptMode(
        QFileDialog.AcceptMode.AcceptSave if save else QFileDialog.AcceptMode.AcceptOpen
    )
    dlg.setOption(QFileDialog.Option.DontUseNativeDialog)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def chosen(paths: Sequence[str]) -> None:
        if paths:
            if settings is not None:
                settings.setValue(key, str(Path(paths[0]).parent))
            then(list(paths))

    dlg.filesSelected.connect(chosen)
    dlg.open()
    return dlg


def open_files(
    parent: QWidget,
    title: str,
    name_filter: str,
    then: Callable[[list[str]], object],
    settings: QSettings | None = None,
    key: str = "dialogs/open",
) -> QFileDialog:
    """Pick existing files."""
    return _file_dialog(parent, title, name_filter, settings, key, then, save=False)


def save_file(
    parent: QWidget,
    title: str,
    name: str,
    name_filter: str,
    then: Callable[[str], object],
    settings: QSettings | None = None,
    key: str = "dialogs/save",
) -> QFileDialog:
    """Pick where to save a file, offered as `name`."""
    dlg = _file_dialog(parent, title, name_filter, settings, key, lambda p: then(p[0]), save=True)
    dlg.selectFile(name)
    return dlg


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
    """The strip at the top of the window: master unreachable, or the latest error; it may
    offer one action (Restart)."""

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
        self.button = QPushButton()
        self.button.setObjectName("bannerButton")
        self.button.hide()
        on_trigger(self.button.clicked, self._act)
        lay.addWidget(self.button)
        self._slot: Callable[[], object] | None = None
        if closable:
            close = QPushButton("Dismiss")
            close.setObjectName("bannerButton")
            on_trigger(close.clicked, self.dismiss)
            lay.addWidget(close)
        self.hide()

    def say(self, text: str, action: str = "", slot: Callable[[], object] | None = None) -> None:
        self.label.setText(text)
        self._slot = slot
        self.button.setText(action)
        self.button.setVisible(bool(action and slot))
        self.setVisible(bool(text))

    def _act(self) -> None:
        if self._slot is not None:
            self._slot()

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
        self.filter = SearchBox()
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
        make_action(self, "Filter", self._focus_filter, QKeySequence.StandardKey.Find)
        self._enablers: list[tuple[QAction, Callable[[list[Row]], bool]]] = []
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
        enabled_when: Callable[[list[Row]], bool] | None = None,
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

    def selected_rows(self) -> list[dict[str, Any]]:
        return [r for k in self.selected_keys() if (r := self.model.row(k)) is not None]

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
