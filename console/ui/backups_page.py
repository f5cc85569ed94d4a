"""Backups of the master's database: create, download, restore, delete."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from console import fmt
from console.services.backups import BackupsService
from console.ui import common
from console.ui.table_panel import TablePanel


class BackupsPage(QWidget):
    def __init__(self, backups: BackupsService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.backups = backups
        self.settings = settings
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Backups"))
        self.table = TablePanel(
            backups.model, "backups", settings, sort=("created_at", Qt.SortOrder.DescendingOrder)
        )
        t = self.table
        self.create_action = t.add_action(
            "Create backup", backups.create, "Ctrl+B", needs_selection=False
        )
        self.download_action = t.add_action("Download…", self.download, "Ctrl+S")
        self.restore_action = t.add_action("Restore…", self.restore)
        self.delete_action = t.add_action("Delete…", self.delete, "Del")
        self.refresh_action = t.add_action("Refresh", backups.reload, needs_selection=False)
        t.notice.follow(backups.availability, "backups")
        hint = QLabel(
            "Backups are consistent copies of the master's database, taken while it runs. "
            "Restoring one puts every system, module, instance, rule and user back as it was; "
            "the state just before is kept as a pre-restore backup. Downloading, deleting and "
            "restoring need the admin role."
        )
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        lay.addWidget(t, 1)

    def download(self) -> Any:
        keys = self.table.selected_keys()
        if not keys:
            return None
        return common.save_file(
            self,
            "Save backup",
            f"gdos-backup-{keys[0]}.db",
            "SQLite (*.db)",
            self.download_to,
            self.settings,
        )

    def download_to(self, path: str) -> Any:
        keys = self.table.selected_keys()
        return self.backups.download(keys[0], path) if keys else None

    def delete(self) -> Any:
        return self.table.confirm_first(
            "Delete backup",
            lambda backup: f"Delete backup {backup['id']} for good?",
            self.backups.delete,
        )

    def restore(self) -> Any:
        return self.table.confirm_first(
            "Restore",
            lambda backup: (
                f"Restore backup {backup['id']} from {fmt.when(backup.get('created_at'))}? "
                "Everything changed since then (systems, modules, instances, rules, users) goes back "
                "to that moment. Running services the backup does not know keep running and are "
                "listed on their nodes as unmanaged."
            ),
            self.backups.restore,
        )
