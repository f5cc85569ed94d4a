"""Overview: nodes online/offline, instances by state, firing alerts, what needs attention."""

from __future__ import annotations

from collections import Counter
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QListWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from console.models.base import RowTableModel
from console.models.cells import STATE_COLORS
from console.models.rows import AlertRow, InstanceRow, NodeRow, PackageRow
from console.ui import common
from protocol.states import InstanceState

STATES = [s.value for s in InstanceState]
MAX_PROBLEMS = 200
STALE = "#9aa0a6"  # what is not live any more: the last known state, greyed


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Card(QFrame):
    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        lay = QVBoxLayout(self)
        self.name = title
        self.title = QLabel(title)
        self.title.setObjectName("cardTitle")
        self.value = QLabel("-")
        self.value.setObjectName("cardValue")
        self.detail = QLabel("")
        self.detail.setObjectName("cardDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        for w in (self.title, self.value, self.detail):
            lay.addWidget(w)
        lay.addStretch(1)

    def show_value(self, value: str, detail: str = "", color: str | None = None) -> None:
        self.value.setText(value)
        self.value.setStyleSheet(f"color: {color};" if color else "")
        self.detail.setText(detail)


def _colored(counts: Counter[str], order: list[str], live: bool = True) -> str:
    parts = []
    for key in order + sorted(set(counts) - set(order)):
        if counts.get(key):
            color = STATE_COLORS.get(key, "#5f6368") if live else STALE
            parts.append(f'<span style="color:{color}">{counts[key]} {key}</span>')
    return " · ".join(parts) or "none"


class OverviewPage(QWidget):
    def __init__(
        self,
        nodes: RowTableModel[NodeRow],
        instances: RowTableModel[InstanceRow],
        alerts: RowTableModel[AlertRow],
        packages: RowTableModel[PackageRow],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.nodes, self.instances, self.alerts, self.packages = nodes, instances, alerts, packages
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Overview"))
        grid = QGridLayout()
        self.node_card = Card("Nodes")
        self.instance_card = Card("Instances")
        self.alert_card = Card("Firing alerts")
        self.package_card = Card("Packages")
        for n, card in enumerate(
            (self.node_card, self.instance_card, self.alert_card, self.package_card)
        ):
            grid.addWidget(card, 0, n)
        lay.addLayout(grid)
        systems = QLabel("Systems")
        systems.setObjectName("sectionTitle")
        lay.addWidget(systems)
        self.systems = QTableWidget(0, 3)
        self.systems.setObjectName("systemsSummary")
        self.systems.setHorizontalHeaderLabels(["System", "Running", "Instances by state"])
        self.systems.verticalHeader().hide()
        self.systems.horizontalHeader().setStretchLastSection(True)
        self.systems.setColumnWidth(0, 220)
        self.systems.setColumnWidth(1, 120)
        self.systems.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.systems.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        lay.addWidget(self.systems, 1)
        attention = QLabel("Needs attention")
        attention.setObjectName("sectionTitle")
        lay.addWidget(attention)
        self.problems = QListWidget()
        self.problems.setObjectName("problems")
        lay.addWidget(self.problems, 1)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.refresh)
        # Counted again when rows come, go or change, never for live figures alone (those
        # change every second), and only while the page is shown.
        self._stale = True
        self.live = True  # False while the master is unreachable: figures are greyed
        for model in (nodes, instances, alerts, packages):
            model.content_changed.connect(self._changed)
        self.refresh()

    def set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            self.refresh()

    def _changed(self) -> None:
        self._stale = True
        if self.isVisible():
            self._timer.start()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Count everything again: the cards, the systems table and what needs attention."""
        self._stale = False
        nodes, instances = self.nodes.rows(), self.instances.rows()
        firing = [r for r in self.alerts.rows() if r.get("state") == "firing"]
        self._show_cards(nodes, instances, firing)
        self._show_systems(instances)
        self._show_problems(nodes, instances, firing)

    def _show_cards(
        self, nodes: list[NodeRow], instances: list[InstanceRow], firing: list[AlertRow]
    ) -> None:
        live = self.live
        node_states = Counter(str(r.get("status")) for r in nodes)
        online = node_states.get("online", 0)
        offline = node_states.get("offline", 0)
        self.node_card.show_value(
            f"{online} / {online + offline}",
            _colored(node_states, ["online", "offline"], live)
            if live
            else "last known: the master is unreachable",
            STALE if not live else STATE_COLORS["offline"] if offline else STATE_COLORS["online"],
        )
        inst_states = Counter(str(r.get("state")) for r in instances)
        running = inst_states.get("running", 0)
        bad = inst_states.get("failed", 0) + inst_states.get("unknown", 0)
        self.instance_card.show_value(
            f"{running} running",
            _colored(inst_states, STATES, live),
            STALE if not live else STATE_COLORS["warning"] if bad else None,
        )
        unacked = [r for r in firing if not r.get("acked")]
        self.alert_card.show_value(
            str(len(firing)),
            f"{len(unacked)} not acknowledged" if firing else "all quiet",
            STALE if not live else STATE_COLORS["firing"] if firing else STATE_COLORS["resolved"],
        )
        names = {str(r.get("name")) for r in self.packages.rows()}
        self.package_card.show_value(
            str(len(names)), plural(len(self.packages), "version"), STALE if not live else None
        )
        for card in (self.node_card, self.instance_card, self.alert_card, self.package_card):
            card.title.setText(card.name + ("" if live else " (last known)"))

    def _show_systems(self, instances: list[InstanceRow]) -> None:
        live = self.live
        by_system: dict[str, Counter[str]] = {}
        for r in instances:
            by_system.setdefault(str(r.get("system_name") or r.get("system_id")), Counter())[
                str(r.get("state"))
            ] += 1
        self.systems.setRowCount(len(by_system))
        for n, (name, counts) in enumerate(sorted(by_system.items())):
            total = sum(counts.values())
            cell = QTableWidgetItem(f"{counts.get('running', 0)} / {total}")
            cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if not live:
                cell.setForeground(QBrush(QColor(STALE)))
            elif counts.get("running", 0) == total:
                cell.setForeground(QBrush(QColor(STATE_COLORS["running"])))
            states = QLabel(_colored(counts, STATES, live))
            states.setTextFormat(Qt.TextFormat.RichText)
            self.systems.setItem(n, 0, QTableWidgetItem(name))
            self.systems.setItem(n, 1, cell)
            self.systems.setCellWidget(n, 2, states)

    def _show_problems(
        self, nodes: list[NodeRow], instances: list[InstanceRow], firing: list[AlertRow]
    ) -> None:
        self.problems.clear()
        if not self.live:
            self.problems.addItem(
                "The master is unreachable: what is shown is the last known state."
            )
        for node in nodes:
            if node.get("status") == "offline":
                self.problems.addItem(f"node {node.get('hostname')} is offline")
        shown = 0
        for inst in instances:
            if inst.get("state") in ("failed", "unknown", "exited"):
                why = f": {inst['last_error']}" if inst.get("last_error") else ""
                shown += 1
                if shown <= MAX_PROBLEMS:
                    self.problems.addItem(
                        f"instance {inst.get('name')} is {inst.get('state')}{why}"
                    )
        if shown > MAX_PROBLEMS:
            self.problems.addItem(f"… and {shown - MAX_PROBLEMS} more instances (see Instances)")
        for alert in firing:
            self.problems.addItem(
                f"alert {alert.get('rule_name') or alert.get('rule_id')} ({alert.get('severity')}) "
                f"firing on {alert.get('target_kind', '')} "
                f"{alert.get('target_name') or alert.get('target')}"
                + (" (acknowledged)" if alert.get("acked") else "")
                + (" (silenced)" if alert.get("silenced") else "")
            )
        if not self.problems.count():
            self.problems.addItem("Nothing needs attention.")
