"""A form that checks what it can itself, hands its values to a service call and stays open,
with what was typed, until the master accepts them.

`values()` raises `FieldError` naming the field; a refusal from the master is shown next to the
field it concerns, in words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from console import errors
from console.client import ClientError
from console.message import async_slot, captured, describe

Submit = Callable[[dict[str, Any]], Awaitable[Any]]


class FieldError(ValueError):
    """A value the form itself refuses; `field` names the field (as the API does)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Form(QDialog):
    """`submit(values)` runs when OK is pressed; the form closes only once it succeeds."""

    submitted = Signal(object)  # what `submit` returned

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(460)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.outer = QVBoxLayout(self)
        self.form = QFormLayout()
        self.outer.addLayout(self.form)
        self.problem = QLabel("")
        self.problem.setObjectName("formProblem")
        self.problem.setWordWrap(True)
        self.problem.hide()
        self.outer.addWidget(self.problem)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        self.outer.addWidget(self.buttons)
        self.submit: Submit | None = None
        self.name_field = "name"  # where "already exists" is shown
        self.result_value: Any = None
        self._fields: dict[str, tuple[str, QLabel]] = {}  # API field -> (label, problem)

    @property
    def ok_button(self) -> QPushButton:
        button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        assert button is not None
        return button

    def add_field(self, key: str, label: str, field: QWidget | QLayout) -> None:
        """A row of the form for the API field `key`, with room for its problem below it."""
        box = QVBoxLayout()
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        if isinstance(field, QLayout):
            box.addLayout(field)
        else:
            box.addWidget(field)
        problem = QLabel("")
        problem.setObjectName("fieldProblem")
        problem.setWordWrap(True)
        problem.hide()
        box.addWidget(problem)
        self.form.addRow(label, box)
        if key:
            self._fields[key] = (label, problem)

    def field_problem(self, key: str) -> str:
        """The problem shown at field `key` ("" if none): what tests and screen readers see."""
        entry = self._fields.get(key)
        return entry[1].text() if entry is not None and not entry[1].isHidden() else ""

    def clear_problems(self) -> None:
        self.problem.hide()
        for _, label in self._fields.values():
            label.hide()

    def show_problems(self, problems: dict[str, str], phrases: bool = False) -> None:
        """Each problem next to its field (the nearest enclosing one), the rest below the form.

        `phrases`: the texts follow the field's name ("may contain only letters, …", as
        `errors.field_problems` words them); otherwise they are whole sentences."""
        self.clear_problems()
        rest: list[str] = []
        for field, text in problems.items():
            key = field
            while key and key not in self._fields:
                key = key.rpartition(".")[0]
            if key:
                name, label = self._fields[key]
                label.setText(_sentence(f"{name} {text}" if phrases and name else text))
                label.show()
            elif field and phrases:
                rest.append(f"{field.replace('_', ' ')} {text}")
            else:
                rest.append(text)
        if rest:
            self.problem.setText(_sentence("; ".join(rest)))
            self.problem.show()

    def _accept(self) -> None:
        try:
            values = self.values()
        except FieldError as exc:
            self.show_problems({exc.field: str(exc)})
            return
        except ValueError as exc:
            self.show_problems({errors.WHOLE: str(exc)})
            return
        if self.submit is None:
            self.accept()
            return
        self.send(values)

    @async_slot(dict)
    async def send(self, values: dict[str, Any]) -> None:
        """Hand the values to `submit`; close on success, else say why and keep the input."""
        assert self.submit is not None
        self.clear_problems()
        self.ok_button.setEnabled(False)
        problems: dict[str, str] = {}
        result: Any = None
        try:
            with captured() as refusal:
                pending = self.submit(values)
            result = await pending
            if refusal.error is not None:
                raise refusal.error
        except ClientError as exc:
            problems = errors.field_problems(exc, self.name_field)
        except Exception as exc:
            problems = {errors.WHOLE: describe(exc)}
        if not isValid(self):
            return  # closed meanwhile
        self.ok_button.setEnabled(True)
        if problems:
            self.show_problems(problems, phrases=True)
            return
        self.result_value = result
        self.submitted.emit(result)
        self.accept()

    def values(self) -> dict[str, Any]:
        raise NotImplementedError


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def parse_env(text: str, field: str = "env") -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise FieldError(field, f"the line '{line.strip()}' is not NAME=value")
        env[key.strip()] = value
    return env
