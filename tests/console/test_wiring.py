"""Guards on how the console is wired: one way to connect actions, no shortcut two actions
share where both are live, filter boxes that leave Ctrl keys to the shortcuts, errors in words."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QWidget

from console.app import ConsoleApp
from console.client import ClientError
from console.errors import WHOLE, field_problems, phrase, sentence
from console.ui.logs_page import worth_showing
from console.ui.main_window import MainWindow
from console.ui.overview import plural
from tests.support import ROOT


def test_actions_and_buttons_are_connected_one_way():
    """`triggered`/`clicked` pass `checked` (a bool) to a slot with an optional first parameter;
    every connection goes through `common.on_trigger`, which calls the slot with nothing."""
    direct = re.compile(r"\.(triggered|clicked)\.connect\(")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "console").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if direct.search(line) and path.name != "common.py"
    ]
    assert found == []


def _shortcuts(actions: list[QAction]) -> list[str]:
    return [a.shortcut().toString() for a in actions if not a.shortcut().isEmpty()]


async def test_no_two_live_actions_share_a_shortcut(settings, tmp_path):
    """A page's shortcut that the window also has is ambiguous: Qt runs neither."""
    app = ConsoleApp(settings, data_dir=tmp_path / "e", tick_ms=0)
    window_keys = _shortcuts(
        [
            a
            for a in app.window.actions()
            if a.shortcutContext() == Qt.ShortcutContext.WindowShortcut
        ]
    )
    assert len(window_keys) == len(set(window_keys)), Counter(window_keys)
    for name, page in app.window.pages.items():
        owners = [page, *page.findChildren(QWidget)]
        for owner in owners:
            keys = _shortcuts(owner.actions())
            assert len(keys) == len(set(keys)), (name, Counter(keys))
            assert not set(keys) & set(window_keys), (name, set(keys) & set(window_keys))
    assert "Ctrl+0" in window_keys  # the tenth page (Users) has one too
    await app.shutdown()


async def test_window_menu_keys_emit_their_requests(qtbot, settings):
    from tests.console.clicks import press

    w = MainWindow(settings)
    w.show()
    heard: list[str] = []
    for signal, name in (
        (w.connect_requested, "connect"),
        (w.embedded_requested, "embedded"),
        (w.disconnect_requested, "disconnect"),
        (w.refresh_requested, "refresh"),
        (w.quit_requested, "quit"),
    ):
        signal.connect(lambda name=name: heard.append(name))
    for keys in ("Ctrl+O", "Ctrl+E", "Ctrl+Shift+D", "F5", "Ctrl+Q"):
        await press(qtbot, w.start_page.connect_button, keys)
    assert heard == ["connect", "embedded", "disconnect", "refresh", "quit"]
    w.hide()


XCB_CHECK = textwrap.dedent(
    """
    import sys
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication, QLineEdit
    app = QApplication([])
    from console.ui.common import SearchBox

    def claims(edit, key):
        ev = QKeyEvent(QEvent.Type.ShortcutOverride, key, Qt.KeyboardModifier.ControlModifier)
        ev.ignore()
        QApplication.sendEvent(edit, ev)
        return ev.isAccepted()

    plain, box = QLineEdit("abc"), SearchBox("abc")
    print(claims(plain, Qt.Key.Key_U), claims(box, Qt.Key.Key_U), claims(box, Qt.Key.Key_C))
    """
)


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Xvfb (system-deps screenshots)")
def test_filter_boxes_leave_ctrl_u_to_the_upload_under_x11():
    """Under X11 a line edit takes Ctrl+U ("clear the line") before any shortcut; the filter
    boxes do not (offscreen Qt has no such key binding, so this runs under Xvfb)."""
    out = subprocess.run(
        ["xvfb-run", "-a", sys.executable, "-c", XCB_CHECK],
        cwd=ROOT,
        env={"QT_QPA_PLATFORM": "xcb", "PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.split() == ["True", "False", "True"], out.stderr[-2000:]


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (
            "String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'",
            "may contain only letters, digits, '.', '-' and '_' (no spaces), starting with a letter or digit",
        ),
        ("String should have at least 1 character", "cannot be empty"),
        ("String should have at least 8 characters", "needs at least 8 characters"),
        ("String should have at most 128 characters", "can have at most 128 characters"),
        ("Input should be a valid string", "must be text"),
        ("Input should be greater than or equal to 0", "must be 0 or more"),
        ("Input should be 'warning' or 'critical'", "must be one of warning, critical"),
        ("Field required", "is needed"),
        ("Value error, threshold: not a state word", "threshold: not a state word"),
        ("something new the master says", "something new the master says"),
    ],
)
def test_validation_messages_become_what_to_change(message, said):
    assert phrase(message) == said


def test_refusals_are_keyed_by_field():
    invalid = ClientError(
        "name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'",
        status=422,
        code="validation_failed",
        details={
            "problems": [
                {
                    "field": "name",
                    "message": "String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'",
                },
                {"field": "start_order", "message": "Input should be greater than or equal to 0"},
            ]
        },
    )
    assert field_problems(invalid) == {
        "name": "may contain only letters, digits, '.', '-' and '_' (no spaces), starting with a letter or digit",
        "start_order": "must be 0 or more",
    }
    assert sentence(invalid).startswith("name may contain only letters")
    taken = ClientError("a system named shop exists", status=409, code="already_exists")
    assert field_problems(taken) == {"name": "a system named shop exists"}
    assert field_problems(taken, name_field="username") == {
        "username": "a system named shop exists"
    }
    scope = ClientError(
        "scope.node_id: no node n1",
        status=404,
        code="not_found",
        details={"field": "scope.node_id"},
    )
    assert field_problems(scope) == {"scope.node_id": "no node n1"}
    offline = ClientError("node n1 is offline", status=409, code="node_offline")
    assert field_problems(offline) == {WHOLE: "node n1 is offline"}
    assert sentence(offline) == "node n1 is offline"


def test_small_words():
    assert plural(1, "version") == "1 version" and plural(2, "version") == "2 versions"
    assert plural(0, "version") == "0 versions"
    files = [
        {"name": "stdout", "size": 0, "exists": True},
        {"name": "stderr", "size": 12},
        {"name": "Access Log", "size": 40},
    ]
    assert worth_showing(files) == 1  # stderr: the first with something in it
    assert worth_showing([{"name": "stdout", "size": 3}, {"name": "stderr", "size": 9}]) == 0
    assert worth_showing([{"name": "stdout", "exists": False}, {"name": "x", "error": "no"}]) == 0


def test_an_internal_error_is_not_shown_as_python():
    from console.message import describe

    said = describe(TypeError("argument after ** must be a mapping, not bool"))
    assert "mapping" not in said and said.startswith("an unexpected error in the console")
    assert (
        describe(ValueError("the line 'x' is not NAME=value")) == "the line 'x' is not NAME=value"
    )


async def test_empty_tables_show_whole_titles_and_log_labels_follow_sizes(settings, tmp_path):
    app = ConsoleApp(settings, data_dir=tmp_path / "e", tick_ms=0)
    app.window.set_connected("http://x", "admin", "admin")
    app.window.show()
    app.window.show_page("alerts")
    panel = app.alerts_page.active
    header = panel.view.horizontalHeader()
    col = app.alerts.alerts.column("acked")
    assert panel.view.columnWidth(col) >= header.sectionSizeHint(col)  # not "cknowledge"

    logs = app.logs_page
    app.fleet.instances.set_rows([{"id": "i1", "name": "web-1", "node_name": "n"}])
    logs.show_instance("i1")
    opened: list[str] = []
    logs._open = lambda: opened.append(str(logs.file.currentData()))
    files = [{"name": "stdout", "size": 0}, {"name": "stderr", "size": 10}]
    logs._files("i1", files)
    assert logs.file.currentData() == "stderr" and opened == ["stderr"]
    logs._size("i1", "stderr", 4096)
    assert logs.file.itemText(1) == "stderr (4.0 KiB)"
    logs._files("i1", [{"name": "stdout", "size": 7}, {"name": "stderr", "size": 5000}])
    assert logs.file.itemText(0) == "stdout (7 B)" and opened == ["stderr"]  # labels only
    await app.shutdown()
