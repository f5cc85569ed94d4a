"""The operation the Systems page follows: what it is and how far it got, its steps live, and
Resume (a paused canary) and Cancel while it runs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from console.models.rows import OperationRow
from console.services.fleet import FleetService
from console.services.operations import OperationsService

STATE_WORDS = {"running": "in progress", "succeeded": "done", "failed": "failed"}
PHASE_WORDS = {
    "preparing": "every node fetches and unpacks the release first",
    "rolling_back": "rolling back what was switched",
}


class OperationPanel(QWidget):
    def __init__(
        self,
        fleet: FleetService,
        operations: OperationsService,
        resume: QAction,
        cancel: QAction,
    ) -> None:
        super().__init__()
        self.fleet, self.operations = fleet, operations
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.label = QLabel("No operation running.")
        self.label.setObjectName("sectionTitle")
        self.label.setWordWrap(True)
        top.addWidget(self.label, 1)
        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar.addAction(resume)
        self.toolbar.addAction(cancel)
        top.addWidget(self.toolbar)
        lay.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        lay.addWidget(self.bar)
        self.steps = QTableView()
        self.steps.setObjectName("operationSteps")
        self.steps.setModel(operations.steps)
        self.steps.verticalHeader().hide()
        self.steps.horizontalHeader().setStretchLastSection(True)
        self.steps.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.steps.verticalHeader().setDefaultSectionSize(24)
        for column, width in enumerate((220, 140, 60, 120, 150, 150, 60, 130)):
            self.steps.setColumnWidth(column, width)
        lay.addWidget(self.steps, 1)
        operations.changed.connect(self.show_progress)

    def show_progress(self, system_id: str, state: str, done: int, total: int) -> None:
        op = self.operations.current
        if op is None:
            return
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        self.label.setText(describe(op, self._target(op, system_id), state, done, total))

    def _target(self, op: OperationRow, system_id: str) -> str:
        """The module a rollout moves (with its versions), else the system."""
        rollout = op.get("rollout") or {}
        modules = list((rollout.get("modules") or {}).values())
        if op.get("module_id") and len(modules) == 1:
            mod = modules[0]
            return f"{mod.get('name')} {mod.get('from') or '?'} → {mod.get('to')}"
        return self.fleet.system_names.get(system_id, system_id)


def describe(op: OperationRow, target: str, state: str, done: int, total: int) -> str:
    """One line: what runs, by whom, how far; a paused canary says what to do next."""
    words = STATE_WORDS.get(state, state)
    where = ""
    rollout = op.get("rollout") or {}
    if state == "running" and op.get("paused"):
        words = "paused after the canary: Resume goes on, Cancel rolls it back"
    elif state == "running" and rollout:
        phase = str(rollout.get("phase") or "")
        if phase in PHASE_WORDS:
            where = f", {PHASE_WORDS[phase]}"
        elif rollout.get("batch") and rollout.get("batches"):
            where = f", batch {rollout['batch']} of {rollout['batches']}"
    elif state == "running" and op.get("level"):
        where = f", start order {op['level']}"
    by = f" by {op['actor']}" if op.get("actor") else ""
    text = f"{op.get('kind', 'operation')} {target}{by}: {words} ({done} of {total} steps{where})"
    if state == "failed" and op.get("error"):
        text += f": {op['error']}"
    return text
