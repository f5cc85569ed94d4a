"""A system: name and description (`POST /systems`, `PATCH /systems/{id}`)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QWidget

from console.models.rows import SystemRow
from console.ui.dialogs.form import FieldError, Form


class SystemDialog(Form):
    def __init__(self, row: SystemRow | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Edit system" if row else "New system", parent)
        self.setObjectName("systemDialog")
        self.name = QLineEdit(str(row.get("name", "")) if row else "")
        self.name.setReadOnly(row is not None)
        self.name.setPlaceholderText("letters, digits, . _ -")
        self.description = QPlainTextEdit(str(row.get("description", "")) if row else "")
        self.description.setMaximumHeight(90)
        self.add_field("name", "Name", self.name)
        self.add_field("description", "Description", self.description)

    def values(self) -> dict[str, Any]:
        name = self.name.text().strip()
        if not name:
            raise FieldError("name", "a system needs a name")
        return {"name": name, "description": self.description.toPlainText().strip()}
