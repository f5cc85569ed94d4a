"""Roll a module, or several modules of a system, out to a version: the version from the
package's uploads, batch size, canary and auto-rollback."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from console.ui.dialogs.form import FieldError, Form

_COUNT = re.compile(r"\A[1-9][0-9]*\Z")
_SHARE = re.compile(r"\A([1-9][0-9]?|100)%\Z")


@dataclass(frozen=True)
class ModuleChoice:
    """A module to roll out: what it runs now and the versions its package has (newest first)."""

    name: str
    package: str
    current: str  # its version ("" when it follows the newest upload)
    versions: list[str]


def batch_size(text: str) -> int | str:
    """ "2" -> 2, "25%" -> "25%"; anything else is refused in words."""
    text = text.strip().replace(" ", "")
    if _COUNT.match(text):
        return int(text)
    if _SHARE.match(text):
        return text
    raise FieldError(
        "batch_size", "batch size is a number of instances (2) or a share of them (25%)"
    )


def version_box(choice: ModuleChoice, keep: bool) -> QComboBox:
    """The package's versions, newest first, the current one marked; `keep` adds a first
    entry that leaves the module where it is (a system's rollout)."""
    box = QComboBox()
    if keep:
        box.addItem(f"keep {choice.current or 'as it is'}", None)
    for n, version in enumerate(choice.versions):
        notes = ["newest"] if n == 0 else []
        if version == choice.current:
            notes.append("current")
        box.addItem(version + (f"  ({', '.join(notes)})" if notes else ""), version)
    box.setPlaceholderText("pick a version")
    box.setCurrentIndex(0 if keep else -1)
    return box


class RolloutDialog(Form):
    """`values()`: the rollout body of `POST /modules/{id}/rollout` (one module) or of
    `POST /systems/{id}/rollout` (`versions` by module name)."""

    def __init__(
        self,
        title: str,
        modules: list[ModuleChoice],
        system: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(title, parent)
        self.setObjectName("rolloutDialog")
        self.system = system
        self.modules = modules
        self.version_boxes: dict[str, QComboBox] = {}
        if self.system:
            boxes = QFormLayout()
            for choice in modules:
                box = version_box(choice, keep=True)
                self.version_boxes[choice.name] = box
                boxes.addRow(choice.name, box)
            self.add_field("versions", "Versions", boxes)
        else:
            [choice] = modules
            self.version_boxes[choice.name] = version_box(choice, keep=False)
            self.add_field("version", f"Version of {choice.package}", self.version)
        self.batch = QLineEdit("1")
        self.batch.setPlaceholderText("instances at a time: 2, or a share: 25%")
        self.add_field("batch_size", "Batch size", self.batch)
        self.canary = QSpinBox()
        self.canary.setRange(0, 100_000)
        self.canary.setSpecialValueText("none")
        self.canary.setToolTip("pause after this many instances until Resume (Cancel rolls back)")
        self.add_field("canary", "Canary", self.canary)
        self.auto_rollback = QCheckBox("roll back what was switched if a batch fails")
        self.auto_rollback.setChecked(True)
        self.add_field("auto_rollback", "Auto-rollback", self.auto_rollback)
        self.ok_button.setText("Roll out")

    @property
    def version(self) -> QComboBox:
        """The version picker of a single module's rollout."""
        return next(iter(self.version_boxes.values()))

    def pick(self, version: str, module: str = "") -> None:
        """Choose `version` (of `module` in a system's rollout), as a click in the list does."""
        box = self.version_boxes[module] if module else self.version
        index = box.findData(version)
        if index < 0:
            raise ValueError(f"{version} is not in the list")
        box.setCurrentIndex(index)

    def values(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "batch_size": batch_size(self.batch.text()),
            "canary": self.canary.value(),
            "auto_rollback": self.auto_rollback.isChecked(),
        }
        if self.system:
            versions = {
                name: str(box.currentData())
                for name, box in self.version_boxes.items()
                if box.currentData()
            }
            if not versions:
                raise FieldError("versions", "pick a version for at least one module")
            body["versions"] = versions
        else:
            version = self.version.currentData()
            if not version:
                raise FieldError("version", "pick the version to roll out")
            body["version"] = str(version)
        return body
