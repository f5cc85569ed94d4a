"""Audit: the trail of who did what, filtered, exported as CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from console.services.audit import AuditService
from console.ui import common
from console.ui.table_panel import TablePanel


class AuditPage(QWidget):
    def __init__(self, audit: AuditService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.audit = audit
        self.settings = settings
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Audit"))
        filters = QHBoxLayout()
        self.since = QComboBox()
        for label, hours in (
            ("last hour", 1),
            ("last day", 24),
            ("last week", 168),
            ("everything", 0),
        ):
            self.since.addItem(label, hours)
        self.since.setCurrentIndex(1)
        self.actor = common.SearchBox()
        self.actor.setPlaceholderText("actor (exact)")
        self.action = common.SearchBox()
        self.action.setPlaceholderText("action (exact, e.g. POST /api/v1/systems)")
        self.limit = QSpinBox()
        self.limit.setRange(10, 100_000)
        self.limit.setValue(1000)
        self.apply_button = apply = QPushButton("Apply")
        common.on_trigger(apply.clicked, self.load)
        self.export_button = export = QPushButton("Export CSV…")
        common.on_trigger(export.clicked, self.export)
        for w in (
            QLabel("Since"),
            self.since,
            self.actor,
            self.action,
            QLabel("Limit"),
            self.limit,
            apply,
            export,
        ):
            filters.addWidget(w)
        self.actor.returnPressed.connect(self.load)
        self.action.returnPressed.connect(self.load)
        lay.addLayout(filters)
        self.table = TablePanel(
            audit.model,
            "audit",
            settings,
            filter_hint="Search these rows…",
            sort=("ts", Qt.SortOrder.DescendingOrder),
        )
        self.table.notice.follow(audit.availability, "audit")
        lay.addWidget(self.table, 1)

    def filters(self) -> dict[str, Any]:
        hours = int(self.since.currentData() or 0)
        since = (
            (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
            if hours
            else None
        )
        return {
            "since": since,
            "actor": self.actor.text().strip() or None,
            "action": self.action.text().strip() or None,
            "limit": self.limit.value(),
        }

    def load(self) -> Any:
        return self.audit.load(self.filters())

    def export(self) -> Any:
        return common.save_file(
            self,
            "Export audit trail",
            "gdos-audit.csv",
            "CSV (*.csv)",
            self.export_to,
            self.settings,
        )

    def export_to(self, path: str) -> Any:
        self.audit.filters = self.filters()
        return self.audit.export_csv(path)
