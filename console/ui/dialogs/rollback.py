"""Roll a module back: to its previous release, or to another version its nodes keep. The
dialog is the confirmation: it says what runs now and what will run."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from console.ui.dialogs.form import Form


class RollbackDialog(Form):
    """`values()`: the body of `POST /modules/{id}/rollback` (`version` null: the previous)."""

    def __init__(self, module: str, current: str, parent: QWidget | None = None) -> None:
        super().__init__(f"Roll back {module}", parent)
        self.setObjectName("rollbackDialog")
        self.question = QLabel(
            f"Roll {module} (now {current or 'on its newest upload'}) back? Its instances go "
            "back, batch by batch, to a release their nodes keep: nothing is downloaded."
        )
        self.question.setWordWrap(True)
        self.form.addRow(self.question)
        self.version = QComboBox()
        self.version.addItem("the previous release", None)
        self.current = current
        self.add_field("version", "Back to", self.version)
        self.ok_button.setText("Roll back")

    def add_versions(self, versions: list[str]) -> None:
        """Versions the module ran before (its release history), newest first."""
        for version in versions:
            if version != self.current and self.version.findData(version) < 0:
                self.version.addItem(version, version)

    def values(self) -> dict[str, Any]:
        version = self.version.currentData()
        return {"version": str(version) if version else None}
