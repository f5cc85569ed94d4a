"""An alert rule: metric, condition, duration, scope (picked by name), severity, webhook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QWidget

from console.models.rows import AlertRuleRow
from console.ui.dialogs.form import FieldError, Form

Choices = dict[str, list[tuple[str, str]]]  # scope kind -> [(id, name)]
METRICS = {
    "cpu_percent": "CPU (% of one core)",
    "rss_bytes": "memory (RSS, bytes)",
    "state": "instance state",
    "node_status": "node status",
}


class AlertRuleDialog(Form):
    """A rule (`POST/PATCH /alert-rules`); the scope is picked by name."""

    def __init__(
        self,
        row: AlertRuleRow | None = None,
        scopes: Choices | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Edit alert rule" if row else "New alert rule", parent)
        self.setObjectName("alertRuleDialog")
        self.row = row
        self.scopes = scopes or {}
        shown: Mapping[str, Any] = row or {}
        self.name = QLineEdit(str(shown.get("name", "")))
        self.enabled = QCheckBox("Evaluate this rule")
        self.enabled.setChecked(bool(shown.get("enabled", True)))
        self._make_condition(shown)
        self._make_scope(shown.get("scope") or {})
        self.severity = QComboBox()
        self.severity.addItems(["warning", "critical"])
        self.severity.setCurrentText(str(shown.get("severity", "warning")))
        self.webhook = QLineEdit(str(shown.get("webhook_url") or ""))
        self.webhook.setPlaceholderText("optional: https://… receives firing and resolved")
        for key, label, w in (
            ("name", "Name", self.name),
            ("enabled", "", self.enabled),
            ("metric", "Metric", self.metric_box),
            ("op", "Condition", self.op),
            ("threshold", "Threshold", self.threshold),
            ("for_seconds", "For", self.for_seconds),
            ("scope_kind", "Scope", self.scope_kind),
            ("scope", "Of", self.scope_target),
            ("severity", "Severity", self.severity),
            ("webhook_url", "Webhook URL", self.webhook),
        ):
            self.add_field(key, label, w)

    def _make_condition(self, rule: Mapping[str, Any]) -> None:
        """Metric, comparison, threshold (with a hint per metric) and how long it must hold."""
        self.metric_box = QComboBox()
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.metric_box.setCurrentIndex(
            max(0, self.metric_box.findData(rule.get("metric", "cpu_percent")))
        )
        self.op = QComboBox()
        self.op.addItems([">", "<", "==", "!="])
        self.op.setCurrentText(str(rule.get("op", ">")))
        threshold = rule.get("threshold", 90)
        self.threshold = QLineEdit(
            f"{threshold:g}" if isinstance(threshold, float) else str(threshold)
        )
        self.for_seconds = QDoubleSpinBox()
        self.for_seconds.setRange(0, 7 * 86400)
        self.for_seconds.setValue(float(rule.get("for_seconds", 30)))
        self.for_seconds.setSuffix(" s")
        self.metric_box.currentIndexChanged.connect(lambda _: self._metric_hint())
        self._metric_hint()

    def _make_scope(self, scope: dict[str, str]) -> None:
        """What the rule watches: everything, or one system, node or instance picked by name."""
        self.scope_kind = QComboBox()
        self.scope_kind.addItem("everything", "")
        for kind in ("system", "node", "instance"):
            self.scope_kind.addItem(kind, kind)
        self.scope_target = QComboBox()
        self.scope_target.setEditable(True)  # an id typed by hand works too
        self.scope_kind.currentIndexChanged.connect(lambda _: self._targets())
        if not scope:
            self._targets()
            return
        kind, value = next(iter(scope.items()))
        self.scope_kind.setCurrentIndex(max(0, self.scope_kind.findData(kind.removesuffix("_id"))))
        self._targets()
        i = self.scope_target.findData(value)
        if i >= 0:
            self.scope_target.setCurrentIndex(i)
        else:
            self.scope_target.setEditText(str(value))

    def _metric_hint(self) -> None:
        hints = {
            "cpu_percent": "a number, e.g. 90",
            "rss_bytes": "a number of bytes, e.g. 1073741824",
            "state": "an instance state: failed, exited, stopped, running…",
            "node_status": "online or offline",
        }
        self.threshold.setPlaceholderText(hints[str(self.metric_box.currentData())])

    def _targets(self) -> None:
        kind = str(self.scope_kind.currentData() or "")
        self.scope_target.clear()
        self.scope_target.setEnabled(bool(kind))
        for ident, name in sorted(self.scopes.get(kind, []), key=lambda t: t[1]):
            self.scope_target.addItem(f"{name} ({ident})", ident)

    def scope(self) -> dict[str, str]:
        kind = str(self.scope_kind.currentData() or "")
        if not kind:
            return {}
        i = self.scope_target.currentIndex()
        text = self.scope_target.currentText().strip()
        ident = (
            self.scope_target.itemData(i)
            if i >= 0 and self.scope_target.itemText(i) == text
            else text
        )
        if not ident:
            raise FieldError("scope", f"pick the {kind} the rule watches")
        return {f"{kind}_id": str(ident)}

    def values(self) -> dict[str, Any]:
        if not self.name.text().strip():
            raise FieldError("name", "a rule needs a name")
        metric = str(self.metric_box.currentData())
        raw = self.threshold.text().strip()
        threshold: float | str
        if metric in ("cpu_percent", "rss_bytes"):
            try:
                threshold = float(raw)
            except ValueError:
                raise FieldError(
                    "threshold", "the threshold of a numeric metric is a number"
                ) from None
        else:
            if self.op.currentText() not in ("==", "!="):
                raise FieldError("op", f"{METRICS[metric]} compares with == or != only")
            if not raw:
                raise FieldError("threshold", "give the state the rule compares with")
            threshold = raw
        body: dict[str, Any] = {
            "name": self.name.text().strip(),
            "enabled": self.enabled.isChecked(),
            "metric": metric,
            "op": self.op.currentText(),
            "threshold": threshold,
            "for_seconds": self.for_seconds.value(),
            "severity": self.severity.currentText(),
            "scope": self.scope(),
            "webhook_url": self.webhook.text().strip() or None,
        }
        if self.row is not None and self.row.get("id"):
            body["id"] = self.row["id"]
        return body
