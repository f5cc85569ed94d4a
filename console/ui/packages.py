"""Packages: versions table; upload by file dialog or drag and drop, with a progress bar."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from console import fmt
from console.services.fleet import FleetService
from console.services.uploads import UploadService
from console.ui import common
from console.ui.table_panel import TablePanel


class PackagesPage(QWidget):
    def __init__(
        self, fleet: FleetService, uploads: UploadService, settings: QSettings | None = None
    ) -> None:
        super().__init__()
        self.fleet, self.uploads, self.settings = fleet, uploads, settings
        self.setAcceptDrops(True)
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Packages"))
        self.table = TablePanel(fleet.packages, "packages", settings)
        self.upload_action = self.table.add_action(
            "Upload…", self.choose_files, "Ctrl+U", needs_selection=False
        )
        self.table.add_action("Delete", self.delete, "Del")
        hint = QLabel("Drop .zip packages here to upload them.")
        hint.setObjectName("hint")
        lay.addWidget(hint)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.status = QLabel("")
        self.bar = QProgressBar()
        self.bar.setObjectName("uploadBar")
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.hide()
        row.addWidget(self.status, 1)
        row.addWidget(self.bar, 2)
        lay.addLayout(row)
        uploads.progress.connect(self._progress)
        uploads.finished.connect(self._finished)
        uploads.mode_known.connect(lambda mode: self.status.setText(f"{mode} upload…"))

    def choose_files(self) -> QFileDialog:
        """The file dialog opens in the folder of the last upload (else the home folder)."""
        return common.open_files(
            self,
            "Upload packages",
            "Service packages (*.zip);;All files (*)",
            self.upload,
            self.settings,
            "uploads/folder",
        )

    def upload(self, paths: list[str]) -> Any:
        self.bar.setProperty("failed", False)
        self._restyle()
        self.bar.setValue(0)
        self.bar.show()
        return self.uploads.upload(paths)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.upload(paths)

    def _progress(self, name: str, sent: int, total: int) -> None:
        self.bar.show()
        self.bar.setValue(int(1000 * sent / total) if total else 1000)
        self.bar.setFormat(f"{name}: {fmt.size(sent)} of {fmt.size(total)}")

    def _finished(self, name: str, ok: bool, message: str) -> None:
        """A refused upload says so, and its bar turns red and says "refused" (not a full bar
        as if it had worked)."""
        self.status.setText(f"{name}: {'uploaded as ' + message if ok else 'refused: ' + message}")
        if ok:
            if not self.uploads.active:
                self.bar.hide()
            return
        self.bar.setProperty("failed", True)
        self._restyle()
        self.bar.setValue(0)
        self.bar.setFormat(f"{name}: refused")
        self.bar.show()

    def _restyle(self) -> None:
        style = self.bar.style()
        style.unpolish(self.bar)
        style.polish(self.bar)

    def delete(self) -> Any:
        return self.table.confirm_first(
            "Delete package",
            lambda package: f"Delete {package.get('name')} {package.get('version')}?",
            self.fleet.delete_package,
        )
