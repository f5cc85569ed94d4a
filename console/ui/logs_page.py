"""Logs: an instance's log files, the tail of one, followed live, searchable."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase, QKeySequence, QShortcut, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console import fmt
from console.message import info
from console.models.base import RowTableModel
from console.models.rows import InstanceRow
from console.services.logs import LogsService
from console.ui import common

MAX_LOG_CHARS = 2_000_000


def file_label(f: dict[str, Any]) -> str:
    if f.get("error"):
        return f"{f['name']} (refused: {f['error']})"
    if f.get("exists") is False:
        return f"{f['name']} (not written yet)"
    return f"{f['name']} ({fmt.size(f.get('size', 0))})"


def worth_showing(files: list[dict[str, Any]]) -> int:
    """The first log with something in it (stderr when only it has), else the first."""
    for n, f in enumerate(files):
        if not f.get("error") and f.get("exists") is not False and f.get("size"):
            return n
    return 0


class LogsPage(QWidget):
    def __init__(self, logs: LogsService, instances: RowTableModel[InstanceRow]) -> None:
        super().__init__()
        self.logs, self.instances = logs, instances
        self._keep = False  # the next listing keeps the log shown (Reload), else picks one
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Logs"))
        top = QHBoxLayout()
        self.instance = QComboBox()
        self.instance.setMinimumWidth(260)
        self.instance.activated.connect(lambda _: self._new_instance())
        self.file = QComboBox()
        self.file.setMinimumWidth(200)
        self.file.activated.connect(lambda _: self._open())
        self.follow = QCheckBox("Follow")
        self.follow.toggled.connect(self.logs.follow)
        self.search = common.SearchBox()
        self.search.setPlaceholderText("Search (Enter: next, Shift+Enter: previous)")
        self.search.returnPressed.connect(lambda: self.find_text(backward=False))
        QShortcut(QKeySequence("Shift+Return"), self.search, lambda: self.find_text(backward=True))
        self.reload_button = refresh = QPushButton("Reload")
        common.on_trigger(refresh.clicked, self.reload)
        for w, stretch in (
            (QLabel("Instance"), 0),
            (self.instance, 1),
            (QLabel("Log"), 0),
            (self.file, 1),
            (self.follow, 0),
            (refresh, 0),
            (self.search, 2),
        ):
            top.addWidget(w, stretch)
        lay.addLayout(top)
        self.notice = common.Notice()
        lay.addWidget(self.notice)
        self.text = QPlainTextEdit()
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setMaximumBlockCount(50_000)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.text.setFont(font)
        lay.addWidget(self.text, 1)
        find = QShortcut(QKeySequence.StandardKey.Find, self)
        find.activated.connect(self._focus_search)
        logs.files_listed.connect(self._files)
        logs.size_known.connect(self._size)
        logs.text_replaced.connect(self._replace)
        logs.text_appended.connect(self._append)
        self.notice.follow(logs.availability, "logs")
        instances.modelReset.connect(self._fill_instances)
        instances.rowsInserted.connect(lambda *_: self._fill_instances())

    def _new_instance(self) -> None:
        self.file.clear()
        self._pick_instance()

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _fill_instances(self) -> None:
        current = self.instance.currentData()
        self.instance.clear()
        for row in sorted(self.instances.rows(), key=lambda r: str(r.get("name"))):
            self.instance.addItem(f"{row.get('name')} ({row.get('node_name')})", row["id"])
        if current:
            self.instance.setCurrentIndex(max(0, self.instance.findData(current)))

    def show_instance(self, instance_id: str) -> None:
        self._fill_instances()
        self.instance.setCurrentIndex(max(0, self.instance.findData(instance_id)))
        self.file.clear()
        self._pick_instance()

    def reload(self) -> None:
        """Reload: the list of logs (their sizes) and the tail of the one shown."""
        self._pick_instance(keep=True)

    def _pick_instance(self, keep: bool = False) -> None:
        iid = self.instance.currentData()
        if iid:
            self._keep = keep
            self.logs.list_files(str(iid))

    def _files(self, instance_id: str, files: list[dict[str, Any]]) -> None:
        if instance_id != self.instance.currentData():
            return
        names = [f["name"] for f in files]
        if names == [self.file.itemData(i) for i in range(self.file.count())]:
            for i, f in enumerate(files):  # the same logs: their sizes are news
                self.file.setItemText(i, file_label(f))
            if self._keep:
                self._keep = False
                self._open()
            return
        self.file.clear()
        for f in files:
            self.file.addItem(file_label(f), f["name"])
            self.file.setItemData(
                self.file.count() - 1, f.get("path", ""), Qt.ItemDataRole.ToolTipRole
            )
        if files:
            self.file.setCurrentIndex(worth_showing(files))
            self._open()

    def _size(self, instance_id: str, name: str, size: int) -> None:
        if instance_id == self.instance.currentData():
            i = self.file.findData(name)
            if i >= 0:
                self.file.setItemText(i, file_label({"name": name, "size": size}))

    def _open(self) -> Any:
        iid, name = self.instance.currentData(), self.file.currentData()
        if iid and name:
            return self.logs.open(str(iid), str(name), self.follow.isChecked())
        return None

    def _replace(self, text: str) -> None:
        self.text.setPlainText(text[-MAX_LOG_CHARS:])
        self.text.moveCursor(QTextCursor.MoveOperation.End)

    def _append(self, chunk: str) -> None:
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(chunk)
        if at_end:
            bar.setValue(bar.maximum())

    def find_text(self, backward: bool = False) -> bool:
        needle = self.search.text()
        if not needle:
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        if self.text.find(needle, flags):
            return True
        cursor = self.text.textCursor()
        cursor.movePosition(
            QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start
        )
        self.text.setTextCursor(cursor)
        found = self.text.find(needle, flags)
        if not found:
            info(f"'{needle}' is not in this log")
        return bool(found)
