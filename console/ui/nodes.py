"""Nodes: live load, host facts, labels, per-node charts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from console import fmt
from console.services.fleet import FleetService
from console.services.metrics import MetricsService
from console.ui import common
from console.ui.charts import ChartPanel
from console.ui.dialogs.labels import LabelsDialog, parse_labels
from console.ui.table_panel import TablePanel

__all__ = ["FACTS", "NodesPage", "parse_labels"]

FACTS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("hostname", "Host", str),
    ("id", "Node id", str),
    ("status", "Status", str),
    ("ip", "IP", str),
    ("mac", "MAC", str),
    ("os", "OS", str),
    ("arch", "Architecture", str),
    ("cpu_count", "Cores", str),
    ("mem_total", "Memory", fmt.size),
    ("disk_total", "Disk", fmt.size),
    ("agent_version", "Agent", str),
    ("last_seen", "Last seen", fmt.when),
    ("enrolled_at", "Enrolled", fmt.when),
]


class NodesPage(QWidget):
    def __init__(
        self, fleet: FleetService, metrics: MetricsService, settings: QSettings | None = None
    ) -> None:
        super().__init__()
        self.fleet, self.metrics = fleet, metrics
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Nodes"))
        split = QSplitter(Qt.Orientation.Vertical)
        top = QSplitter(Qt.Orientation.Horizontal)
        self.table = TablePanel(fleet.nodes, "nodes", settings)
        self.labels_action = self.table.add_action("Edit labels…", self.edit_labels, "Ctrl+L")
        self.remove_action = self.table.add_action("Remove node", self.remove, "Del")
        top.addWidget(self.table)
        facts = QGroupBox("Host facts")
        self.form = QFormLayout(facts)
        self.values: dict[str, QLabel] = {}
        for key, label, _ in FACTS:
            v = QLabel("")
            v.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[key] = v
            self.form.addRow(label, v)
        self.labels_value = QLabel("")
        self.form.addRow("Labels", self.labels_value)
        top.addWidget(facts)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 1)
        split.addWidget(top)
        self.charts = ChartPanel(metrics.store)
        split.addWidget(self.charts)
        lay.addWidget(split, 1)
        self.current = ""
        self.table.selection_changed.connect(self._selected)
        fleet.nodes.dataChanged.connect(lambda *_: self._show_facts())
        metrics.unavailable.connect(self.charts.say)

    def _selected(self) -> None:
        keys = self.table.selected_keys()
        if not keys or keys[0] == self.current:
            return
        if self.current:
            self.metrics.unwatch(self.current)
        self.current = keys[0]
        row = self.fleet.nodes.row(self.current)
        self._show_facts()
        name = row.get("hostname", self.current) if row else self.current
        self.charts.show_target("node", self.current, str(name))
        self.metrics.watch("node", self.current, 3600)

    def _show_facts(self) -> None:
        row: Mapping[str, Any] = (
            self.fleet.nodes.row(self.current) if self.current else None
        ) or {}
        for key, _, f in FACTS:
            value = row.get(key)
            self.values[key].setText("" if value is None else f(value))
        labels = row.get("labels") or {}
        self.labels_value.setText(", ".join(f"{k}={v}" for k, v in sorted(labels.items())))

    def edit_labels(self) -> LabelsDialog | None:
        rows = self.table.selected_rows()
        if not rows:
            return None
        row = rows[0]
        node_id = str(row["id"])
        dlg = LabelsDialog(str(row.get("hostname")), dict(row.get("labels") or {}), self)
        dlg.submit = lambda v: self.fleet.set_node_labels(node_id, v["labels"])
        dlg.open()
        return dlg

    def remove(self) -> Any:
        return self.table.confirm_first(
            "Remove node",
            lambda node: (
                f"Remove node {node.get('hostname')} and revoke its credential? "
                "Its agent will have to enrol again."
            ),
            self.fleet.delete_node,
        )
