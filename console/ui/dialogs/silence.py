"""Silence alerts like a given one for a while (`POST /silences`)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QLineEdit, QSpinBox, QWidget

from console.models.rows import AlertRow
from console.ui.dialogs.form import FieldError, Form


class SilenceDialog(Form):
    """`POST /silences`: alerts matching stay visible but notify nobody for a while."""

    def __init__(self, alert: AlertRow, parent: QWidget | None = None) -> None:
        super().__init__("Silence alerts", parent)
        self.setObjectName("silenceDialog")
        self.alert = alert
        self.what = QComboBox()
        target = f"{alert.get('target_kind')} {alert.get('target_name') or alert.get('target_id')}"
        rule = alert.get("rule_name") or alert.get("rule_id")
        if alert.get("rule_id") and alert.get("target_id"):
            self.what.addItem(f"rule {rule} on {target}", "rule+target")
        if alert.get("rule_id"):
            self.what.addItem(f"rule {rule} everywhere", "rule")
        if alert.get("target_id"):
            self.what.addItem(f"every rule on {target}", "target")
        self.minutes = QSpinBox()
        self.minutes.setRange(1, 366 * 24 * 60)
        self.minutes.setValue(60)
        self.minutes.setSuffix(" min")
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("why (shown to everyone)")
        self.add_field("matcher", "Silence", self.what)
        self.add_field("duration_seconds", "For", self.minutes)
        self.add_field("comment", "Comment", self.comment)

    def values(self) -> dict[str, Any]:
        what = str(self.what.currentData() or "")
        if not what:
            raise FieldError("matcher", "this alert has neither a rule nor a target to match")
        a = self.alert
        matcher: dict[str, str] = {}
        if what in ("rule+target", "rule"):
            matcher["rule_id"] = str(a["rule_id"])
        if what in ("rule+target", "target"):
            matcher[f"{a.get('target_kind', 'instance')}_id"] = str(a["target_id"])
        minutes = self.minutes.value()
        return {
            "matcher": matcher,
            "duration_seconds": minutes * 60,
            "comment": self.comment.text().strip()
            or f"silenced from the console for {minutes} min",
        }
