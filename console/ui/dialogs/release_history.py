"""The rollouts and rollbacks of a module, or of one instance: from, to, who, when, result."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from console.models.tables import ReleaseTableModel


class ReleaseHistoryDialog(QDialog):
    """Opens empty; the releases service fills `model` (`load_history`)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("releaseHistory")
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(860, 320)
        self.model = ReleaseTableModel(self)
        lay = QVBoxLayout(self)
        self.summary = QLabel("Loading…")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.table = QTableView()
        self.table.setObjectName("releasesTable")
        self.table.setModel(self.model)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        lay.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.model.flushed.connect(self._count)

    def _count(self, rows: int) -> None:
        self.summary.setText(
            f"{rows} rollout(s) and rollback(s), newest first; hover a row for each instance."
            if rows
            else "No rollout or rollback yet."
        )
