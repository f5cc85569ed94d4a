"""Log in to a master (or to several sharing a database: URL1,URL2): URL, user, password and TLS
options."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLineEdit, QPushButton, QWidget

from console import errors
from console.client.masters import join_urls, split_urls
from console.ui import common
from console.ui.dialogs.form import FieldError, Form


class LoginDialog(Form):
    """Master URL, user, password, TLS options; what was typed last is offered again."""

    def __init__(
        self, url: str = "", username: str = "admin", ca: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__("Connect to a GDOS master", parent)
        self.setObjectName("loginDialog")
        self.name_field = ""
        self.url = QLineEdit(url or "http://127.0.0.1:8080")
        self.url.setToolTip(
            "Several masters sharing one database: their URLs separated by commas, in the order "
            "to try them; the console moves to the next when its master stops answering."
        )
        self.username = QLineEdit(username)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.ca = QLineEdit(ca)
        self.ca.setPlaceholderText("system certificates")
        browse = QPushButton("Browse…")
        common.on_trigger(browse.clicked, self._browse)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca, 1)
        ca_row.addWidget(browse)
        self.insecure = QCheckBox("Do not verify the certificate (testing only)")
        self.add_field("url", "Master URL", self.url)
        self.add_field("username", "Username", self.username)
        self.add_field("password", "Password", self.password)
        self.add_field("ca", "CA certificate", ca_row)
        self.add_field("", "", self.insecure)
        (self.password if username else self.username).setFocus()

    def _browse(self) -> None:
        common.open_files(
            self,
            "CA certificate",
            "Certificates (*.pem *.crt);;All files (*)",
            lambda paths: self.ca.setText(paths[0]),
        )

    def values(self) -> dict[str, Any]:
        try:
            url = join_urls(split_urls(self.url.text()))
        except ValueError as exc:
            raise FieldError("url", str(exc)) from None
        if not self.username.text().strip():
            raise FieldError("username", "give a username")
        if not self.password.text():
            raise FieldError("password", "give the password")
        verify: bool | str = True
        if self.insecure.isChecked():
            verify = False
        elif self.ca.text().strip():
            verify = self.ca.text().strip()
        return {
            "url": url,
            "username": self.username.text().strip(),
            "password": self.password.text(),
            "verify": verify,
            "ca": self.ca.text().strip(),
        }

    def show_problem(self, text: str) -> None:
        self.show_problems({errors.WHOLE: text})
