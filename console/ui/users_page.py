"""Users of the master and their roles (admins only)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QVBoxLayout, QWidget

from console.services.users import UsersService
from console.ui import common
from console.ui.dialogs.user import UserDialog
from console.ui.table_panel import TablePanel


class UsersPage(QWidget):
    def __init__(self, users: UsersService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.users = users
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Users"))
        self.table = TablePanel(users.model, "users", settings)
        self.new_action = self.table.add_action(
            "New user…", self.new_user, "Ctrl+N", needs_selection=False
        )
        self.delete_action = self.table.add_action("Delete", self.delete, "Del")
        self.table.notice.follow(users.availability, "users")
        lay.addWidget(self.table, 1)

    def new_user(self) -> UserDialog:
        dlg = UserDialog(self)
        dlg.submit = lambda v: self.users.create(v["username"], v["password"], v["role"])
        dlg.open()
        return dlg

    def delete(self) -> Any:
        return self.table.confirm_first(
            "Delete user",
            lambda user: f"Delete user {user['username']}? Their sessions end now.",
            self.users.delete,
        )
