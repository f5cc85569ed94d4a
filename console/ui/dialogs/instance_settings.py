"""An instance's own settings over its module's: env entries, args and the account it runs as;
they apply at its next start and stay across releases."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from PySide6.QtWidgets import QLabel, QLineEdit, QPlainTextEdit, QWidget

from console.models.rows import InstanceRow, ModuleRow
from console.ui.dialogs.form import FieldError, Form, parse_env


class InstanceSettingsDialog(Form):
    """`values()`: the body of `PATCH /instances/{id}` (every field, so what is cleared goes)."""

    def __init__(
        self,
        row: InstanceRow,
        module: ModuleRow | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(f"Instance {row.get('name', row['id'])}", parent)
        self.setObjectName("instanceSettingsDialog")
        own: Mapping[str, Any] = row.get("settings") or {}
        mod: Mapping[str, Any] = module or {}
        facts = [
            f"runs {row.get('version') or '?'} on {row.get('node_name') or row.get('node_id')}"
        ]
        if row.get("index"):
            facts.append(f"GDOS_INSTANCE_INDEX {row['index']}")
        if row.get("previous_version"):
            facts.append(f"ran {row['previous_version']} before")
        self.facts = QLabel(" · ".join(facts))
        self.facts.setWordWrap(True)
        self.form.addRow(self.facts)
        env = own.get("env") or {}
        self.env = QPlainTextEdit("\n".join(f"{k}={v}" for k, v in env.items()))
        self.env.setPlaceholderText("NAME=value, one per line, over the module's (e.g. PORT=8001)")
        self.env.setMaximumHeight(90)
        module_env = mod.get("env") or {}
        if module_env:
            self.env.setToolTip(
                "the module's: " + ", ".join(f"{k}={v}" for k, v in module_env.items())
            )
        self.args = QLineEdit(shlex.join(own["args"]) if own.get("args") is not None else "")
        module_args = mod.get("args")
        self.args.setPlaceholderText(
            f"empty = the module's ({shlex.join(module_args)})"
            if module_args
            else "empty = the module's, else the package's"
        )
        self.user = QLineEdit(str(own.get("user") or ""))
        self.user.setPlaceholderText("empty = the package's user, else the agent's default")
        self.add_field("env", "Environment", self.env)
        self.add_field("args", "Arguments", self.args)
        self.add_field("user", "Run as", self.user)
        note = QLabel(
            "Saved settings apply at the instance's next start (it shows drift until then)."
        )
        note.setWordWrap(True)
        note.setObjectName("notice")
        self.form.addRow(note)

    def values(self) -> dict[str, Any]:
        try:
            args = shlex.split(self.args.text()) if self.args.text().strip() else None
        except ValueError as exc:
            raise FieldError("args", f"arguments: {exc}") from None
        return {
            "env": parse_env(self.env.toPlainText(), "env"),
            "args": args,
            "user": self.user.text().strip() or None,
        }
