"""Adopt a running process GDOS did not start (`POST /instances/adopt`)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QLineEdit, QPlainTextEdit, QSpinBox, QWidget

from console.models.rows import NodeRow
from console.ui.dialogs.form import FieldError, Form, parse_env


class AdoptDialog(Form):
    """`POST /instances/adopt`: take over a process GDOS did not start."""

    STRATEGIES = {"PID file": "pid_file", "Process name": "process_name", "Command line": "cmdline"}
    HINTS = {
        "pid_file": "/run/app.pid",
        "process_name": "java",
        "cmdline": "a regular expression, e.g. app\\.jar",
    }

    def __init__(
        self, systems: dict[str, str], nodes: list[NodeRow], parent: QWidget | None = None
    ) -> None:
        super().__init__("Adopt a running process", parent)
        self.setObjectName("adoptDialog")
        self.system = QComboBox()
        for sid, name in sorted(systems.items(), key=lambda kv: kv[1]):
            self.system.addItem(name, sid)
        self.node = QComboBox()
        for n in nodes:
            self.node.addItem(f"{n.get('hostname')} ({n.get('status')})", n["id"])
        self.name = QLineEdit()
        self.strategy = QComboBox()
        self.strategy.addItems(list(self.STRATEGIES))
        self.match = QLineEdit()
        self.strategy.currentTextChanged.connect(self._hint)
        self.start_cmd = QLineEdit()
        self.start_cmd.setPlaceholderText("optional; needed to start or restart it")
        self.stop_cmd = QLineEdit()
        self.stop_cmd.setPlaceholderText("optional; without it: SIGTERM, then SIGKILL")
        self.restart = QComboBox()
        self.restart.addItems(["no", "on-failure", "always"])
        self.start_order = QSpinBox()
        self.start_order.setRange(0, 10_000)
        self.logs = QPlainTextEdit()
        self.logs.setPlaceholderText("Name=/path/to/file.log, one per line")
        self.logs.setMaximumHeight(70)
        for key, label, w in (
            ("system_id", "System", self.system),
            ("node_id", "Node", self.node),
            ("name", "Name", self.name),
            ("strategy", "Find it by", self.strategy),
            ("match", "Match", self.match),
            ("start_command", "Start command", self.start_cmd),
            ("stop_command", "Stop command", self.stop_cmd),
            ("restart", "Restart", self.restart),
            ("start_order", "Start order", self.start_order),
            ("log_paths", "Log files", self.logs),
        ):
            self.add_field(key, label, w)
        for api_field in ("pid_file", "process_name", "cmdline_pattern"):
            self._fields[api_field] = self._fields["match"]  # the server names the match field
        self.name_field = "name"
        self._hint(self.strategy.currentText())

    def _hint(self, text: str) -> None:
        self.match.setPlaceholderText(self.HINTS[self.STRATEGIES[text]])

    def values(self) -> dict[str, Any]:
        if not self.system.currentData():
            raise FieldError("system_id", "pick a system (make one on the Systems page)")
        if not self.node.currentData():
            raise FieldError("node_id", "pick a node")
        if not self.name.text().strip():
            raise FieldError("name", "an adopted process needs a name")
        if not self.match.text().strip():
            raise FieldError("match", "say how to find the process")
        strategy = self.STRATEGIES[self.strategy.currentText()]
        field = {
            "pid_file": "pid_file",
            "process_name": "process_name",
            "cmdline": "cmdline_pattern",
        }[strategy]
        restart = self.restart.currentText()
        if restart != "no" and not self.start_cmd.text().strip():
            raise FieldError("start_command", "a restart policy needs a start command")
        body: dict[str, Any] = {
            "system_id": self.system.currentData(),
            "node_id": self.node.currentData(),
            "name": self.name.text().strip(),
            "strategy": strategy,
            field: self.match.text().strip(),
            "log_paths": parse_env(self.logs.toPlainText(), "log_paths"),
            "restart": restart,
            "start_order": self.start_order.value(),
        }
        if self.start_cmd.text().strip():
            body["start_command"] = self.start_cmd.text().strip()
        if self.stop_cmd.text().strip():
            body["stop_command"] = self.stop_cmd.text().strip()
        return body
