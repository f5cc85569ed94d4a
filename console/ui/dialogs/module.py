"""A module of a system: which package, version, start order, environment and arguments."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from PySide6.QtWidgets import QComboBox, QLineEdit, QPlainTextEdit, QSpinBox, QWidget

from console.models.rows import ModuleRow
from console.ui.dialogs.form import FieldError, Form, parse_env


class ModuleDialog(Form):
    def __init__(
        self,
        packages: dict[str, list[str]],
        row: ModuleRow | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Edit module" if row else "Add module", parent)
        self.setObjectName("moduleDialog")
        module: Mapping[str, Any] = row or {}
        self.packages = packages
        self.name = QLineEdit(str(module.get("name", "")))
        self.name.setReadOnly(bool(row))
        self.package = QComboBox()
        self.package.addItems(sorted(packages))
        if module.get("package"):
            self.package.setCurrentText(str(module["package"]))
        self.package.setEnabled(not row)
        self.version = QComboBox()
        self.package.currentTextChanged.connect(self._versions)
        self._versions(self.package.currentText())
        if module.get("version"):
            self.version.setCurrentText(str(module["version"]))
        self.order = QSpinBox()
        self.order.setRange(0, 10_000)
        self.order.setValue(int(module.get("start_order", 1)))
        env = module.get("env") or {}
        self.env = QPlainTextEdit("\n".join(f"{k}={v}" for k, v in env.items()))
        self.env.setPlaceholderText("NAME=value, one per line")
        self.env.setMaximumHeight(90)
        self.args = QLineEdit(shlex.join(module["args"]) if module.get("args") else "")
        self.args.setPlaceholderText("empty = the package's own args")
        self.add_field("name", "Name", self.name)
        self.add_field("package", "Package", self.package)
        self.add_field("version", "Version", self.version)
        self.add_field("start_order", "Start order", self.order)
        self.add_field("env", "Environment", self.env)
        self.add_field("args", "Arguments", self.args)

    def _versions(self, name: str) -> None:
        self.version.clear()
        self.version.addItem("newest")
        self.version.addItems(self.packages.get(name, []))

    def values(self) -> dict[str, Any]:
        name = self.name.text().strip()
        if not name:
            raise FieldError("name", "a module needs a name")
        if not self.package.currentText():
            raise FieldError("package", "upload a package first: a module runs a package")
        try:
            args = shlex.split(self.args.text()) if self.args.text().strip() else None
        except ValueError as exc:
            raise FieldError("args", f"arguments: {exc}") from None
        version = self.version.currentText()
        return {
            "name": name,
            "package": self.package.currentText(),
            "version": None if version == "newest" else version,
            "start_order": self.order.value(),
            "env": parse_env(self.env.toPlainText(), "env"),
            "args": args,
        }
