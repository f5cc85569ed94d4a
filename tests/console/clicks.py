"""Driving the console as a person does: clicks on the real buttons and keys through Qt's own
dispatch (shortcut map, focus, modal dialogs), offscreen. Dialogs and confirmations open
without blocking, so a test finds them among the top-level widgets, fills and accepts them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QDialog,
    QFileDialog,
    QLineEdit,
    QMessageBox,
    QToolBar,
    QWidget,
)
from pytestqt.qtbot import QtBot
from shiboken6 import isValid

from console.ui.dialogs import Form
from tests.console.conftest import until

D = TypeVar("D", bound=QWidget)


async def in_qt(fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` from the event loop, not inside this test's task: QTest's mouse and key
    functions process events, and asyncio steps run from there must not be nested in a task."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    loop.call_soon(run)
    await done


async def focus(widget: QWidget) -> None:
    widget.window().activateWindow()
    widget.setFocus(Qt.FocusReason.ShortcutFocusReason)
    await until(lambda: QApplication.focusWidget() is widget, timeout=5, what=f"focus in {widget}")


async def press(qtbot: QtBot, widget: QWidget, keys: str) -> None:
    """Press `keys` ("Ctrl+Shift+R", "Del", "F5") with the focus in `widget`, as a user does."""
    await focus(widget)
    combo = QKeySequence(keys)[0]  # type: ignore[index]  # (the stubs lack __getitem__)
    await in_qt(qtbot.keyClick, widget, combo.key(), combo.keyboardModifiers())


async def type_in(qtbot: QtBot, widget: QWidget, text: str) -> None:
    await focus(widget)
    await in_qt(qtbot.keyClicks, widget, text)


async def click(qtbot: QtBot, widget: QWidget) -> None:
    assert widget.isVisible() and widget.isEnabled(), f"{widget!r} cannot be clicked"
    await in_qt(qtbot.mouseClick, widget, Qt.MouseButton.LeftButton)


async def click_action(qtbot: QtBot, toolbar: QToolBar, action: QAction) -> None:
    """Click the toolbar button of `action`."""
    button = toolbar.widgetForAction(action)
    assert button is not None, f"{action.text()} is not on the toolbar"
    await click(qtbot, button)


def open_dialogs(kind: type[D]) -> list[D]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]


async def dialog(kind: type[D], what: str = "") -> D:
    """The one visible dialog of this kind (waits for it to open)."""
    found = await until(lambda: open_dialogs(kind), timeout=10, what=what or kind.__name__)
    assert len(found) == 1, found
    return found[0]


def no_dialogs() -> bool:
    return not [
        w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()
    ]


async def ok(qtbot: QtBot, form: Form) -> None:
    """Click the form's OK button."""
    await click(qtbot, form.ok_button)


async def accepted(form: Form, what: str = "") -> None:
    """Wait until the master accepted what the form sent (it closes)."""
    await until(
        lambda: not isValid(form) or not form.isVisible(),
        timeout=30,
        what=what or "the dialog to close",
    )


async def answer(qtbot: QtBot, button_text: str, what: str = "") -> str:
    """Click `button_text` in the confirmation box that is open; returns the box's question."""
    box = await dialog(QMessageBox, what or "a confirmation")
    text = box.text()
    [button] = [b for b in box.buttons() if b.text().replace("&", "") == button_text]
    assert isinstance(button, QAbstractButton)
    await click(qtbot, button)
    await until(lambda: not isValid(box) or not box.isVisible(), timeout=10, what="box closed")
    return text


async def choose_file(qtbot: QtBot, path: Path, what: str = "the file dialog") -> None:
    """Type `path` into the open file dialog's name box and press Enter."""
    files = await dialog(QFileDialog, what)
    edit = files.findChild(QLineEdit, "fileNameEdit")
    assert edit is not None
    edit.clear()
    await type_in(qtbot, edit, str(path))
    await press(qtbot, edit, "Return")
    await until(lambda: not isValid(files) or not files.isVisible(), timeout=10, what="chosen")


async def click_row(qtbot: QtBot, panel: Any, key: str) -> None:
    """Click the row of `key` in a TablePanel's table (scrolled into view first)."""
    src = panel.model.row_of(key)
    assert src >= 0, f"no row {key}"
    idx = panel.proxy.mapFromSource(panel.model.index(src, 0))
    panel.view.scrollTo(idx)
    rect = panel.view.visualRect(idx)
    await in_qt(
        qtbot.mouseClick,
        panel.view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        rect.center(),
    )
    await until(lambda: panel.selected_keys() == [key], timeout=5, what=f"row {key} selected")


def cell_texts(view: Any, column: int) -> list[str]:
    model = view.model()
    return [str(model.index(r, column).data()) for r in range(model.rowCount())]
