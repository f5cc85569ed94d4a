"""Pieces every page uses: actions, search boxes, notices, banners, confirmations, file pickers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt, Signal, SignalInstance
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

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

    def follow(self, availability: SignalInstance, feature: str) -> None:
        """Say what a service's `availability(feature, ok, message)` says of `feature`."""
        availability.connect(
            lambda f, ok, message: self.say("" if ok else message) if f == feature else None
        )


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
