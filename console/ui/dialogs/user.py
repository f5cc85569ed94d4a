"""A new user of the master: name, password and role."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QLineEdit, QWidget

from console.ui.dialogs.form import FieldError, Form


class UserDialog(Form):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("New user", parent)
        self.setObjectName("userDialog")
        self.name_field = "username"
        self.username = QLineEdit()
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.role = QComboBox()
        self.role.addItems(["viewer", "operator", "admin"])
        self.add_field("username", "Username", self.username)
        self.add_field("password", "Password", self.password)
        self.add_field("role", "Role", self.role)

    def values(self) -> dict[str, Any]:
        if not self.username.text().strip():
            raise FieldError("username", "a user needs a name")
        if len(self.password.text()) < 8:
            raise FieldError("password", "the password needs at least 8 characters")
        return {
            "username": self.username.text().strip(),
            "password": self.password.text(),
            "role": self.role.currentText(),
        }
