"""A node's labels, `key=value` comma separated (`PATCH /nodes/{id}`)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLineEdit, QWidget

from console.ui.dialogs.form import FieldError, Form


class LabelsDialog(Form):
    def __init__(self, hostname: str, labels: dict[str, str], parent: QWidget | None = None):
        super().__init__("Node labels", parent)
        self.setObjectName("labelsDialog")
        self.labels = QLineEdit(", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
        self.labels.setPlaceholderText("zone=eu-1, role=app")
        self.add_field("labels", f"Labels of {hostname}", self.labels)

    def values(self) -> dict[str, Any]:
        return {"labels": parse_labels(self.labels.text())}


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise FieldError("labels", f"'{part.strip()}' is not key=value")
        labels[key.strip()] = value.strip()
    return labels
