"""Forms: system, module, deploy, adopt, alert rule, silence, labels, user, log-in.

A form checks what it can itself (`values()` raises `FieldError` naming the field), then hands
its values to `submit` (a service call) and stays open, with what was typed, until the master
accepts them: a refusal is shown next to the field it concerns, in words.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from console import errors
from console.client import ClientError
from console.message import async_slot, captured, describe
from console.models.base import Row
from console.ui import common

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


class SystemDialog(Form):
    def __init__(self, row: Row | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Edit system" if row else "New system", parent)
        self.setObjectName("systemDialog")
        self.name = QLineEdit(str((row or {}).get("name", "")))
        self.name.setReadOnly(row is not None)
        self.name.setPlaceholderText("letters, digits, . _ -")
        self.description = QPlainTextEdit(str((row or {}).get("description", "")))
        self.description.setMaximumHeight(90)
        self.add_field("name", "Name", self.name)
        self.add_field("description", "Description", self.description)

    def values(self) -> dict[str, Any]:
        name = self.name.text().strip()
        if not name:
            raise FieldError("name", "a system needs a name")
        return {"name": name, "description": self.description.toPlainText().strip()}


class ModuleDialog(Form):
    def __init__(
        self, packages: dict[str, list[str]], row: Row | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__("Edit module" if row else "Add module", parent)
        self.setObjectName("moduleDialog")
        row = row or {}
        self.packages = packages
        self.name = QLineEdit(str(row.get("name", "")))
        self.name.setReadOnly(bool(row))
        self.package = QComboBox()
        self.package.addItems(sorted(packages))
        if row.get("package"):
            self.package.setCurrentText(str(row["package"]))
        self.package.setEnabled(not row)
        self.version = QComboBox()
        self.package.currentTextChanged.connect(self._versions)
        self._versions(self.package.currentText())
        if row.get("version"):
            self.version.setCurrentText(str(row["version"]))
        self.order = QSpinBox()
        self.order.setRange(0, 10_000)
        self.order.setValue(int(row.get("start_order", 1)))
        self.env = QPlainTextEdit("\n".join(f"{k}={v}" for k, v in (row.get("env") or {}).items()))
        self.env.setPlaceholderText("NAME=value, one per line")
        self.env.setMaximumHeight(90)
        self.args = QLineEdit(shlex.join(row["args"]) if row.get("args") else "")
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


class NodePicker(Form):
    """Pick one or more nodes (deploy a module, adopt on a node)."""

    def __init__(
        self, title: str, nodes: list[Row], multi: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(title, parent)
        self.setObjectName("nodePicker")
        self.multi = multi
        self.list = QListWidget()
        for n in nodes:
            item = QListWidgetItem(f"{n.get('hostname')}  ({n.get('status')}, {n.get('ip')})")
            item.setData(Qt.ItemDataRole.UserRole, n["id"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if len(nodes) == 1 else Qt.CheckState.Unchecked
            )
            self.list.addItem(item)
        self.add_field("node_id", "Nodes", self.list)

    def values(self) -> dict[str, Any]:
        ids = [
            str(self.list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.list.count())
            if self.list.item(i).checkState() == Qt.CheckState.Checked
        ]
        if not ids:
            raise FieldError("node_id", "tick at least one node")
        if not self.multi and len(ids) > 1:
            raise FieldError("node_id", "tick one node")
        return {"node_ids": ids}


class AdoptDialog(Form):
    """`POST /instances/adopt`: take over a process GDOS did not start."""

    STRATEGIES = {"PID file": "pid_file", "Process name": "process_name", "Command line": "cmdline"}
    HINTS = {
        "pid_file": "/run/app.pid",
        "process_name": "java",
        "cmdline": "a regular expression, e.g. app\\.jar",
    }

    def __init__(
        self, systems: dict[str, str], nodes: list[Row], parent: QWidget | None = None
    ) -> None:
        super().__init__("Adopt a running process", parent)
        self.setObjectName("adoptDialog")
        self.system = QComboBox()
        for sid, name in sorted(systems.items(), key=lambda kv: kv[1]):
            self.system.addItem(name, sid)
        self.node = QComboBox()
        for n in nodes:
            self.node.addItem(f"{n.get('hostname')} ({n.get('status')})", n["id"])
        self.name = QLineEdit()
        self.strategy = QComboBox()
        self.strategy.addItems(list(self.STRATEGIES))
        self.match = QLineEdit()
        self.strategy.currentTextChanged.connect(self._hint)
        self.start_cmd = QLineEdit()
        self.start_cmd.setPlaceholderText("optional; needed to start or restart it")
        self.stop_cmd = QLineEdit()
        self.stop_cmd.setPlaceholderText("optional; without it: SIGTERM, then SIGKILL")
        self.restart = QComboBox()
        self.restart.addItems(["no", "on-failure", "always"])
        self.start_order = QSpinBox()
        self.start_order.setRange(0, 10_000)
        self.logs = QPlainTextEdit()
        self.logs.setPlaceholderText("Name=/path/to/file.log, one per line")
        self.logs.setMaximumHeight(70)
        for key, label, w in (
            ("system_id", "System", self.system),
            ("node_id", "Node", self.node),
            ("name", "Name", self.name),
            ("strategy", "Find it by", self.strategy),
            ("match", "Match", self.match),
            ("start_command", "Start command", self.start_cmd),
            ("stop_command", "Stop command", self.stop_cmd),
            ("restart", "Restart", self.restart),
            ("start_order", "Start order", self.start_order),
            ("log_paths", "Log files", self.logs),
        ):
            self.add_field(key, label, w)
        for api_field in ("pid_file", "process_name", "cmdline_pattern"):
            self._fields[api_field] = self._fields["match"]  # the server names the match field
        self.name_field = "name"
        self._hint(self.strategy.currentText())

    def _hint(self, text: str) -> None:
        self.match.setPlaceholderText(self.HINTS[self.STRATEGIES[text]])

    def values(self) -> dict[str, Any]:
        if not self.system.currentData():
            raise FieldError("system_id", "pick a system (make one on the Systems page)")
        if not self.node.currentData():
            raise FieldError("node_id", "pick a node")
        if not self.name.text().strip():
            raise FieldError("name", "an adopted process needs a name")
        if not self.match.text().strip():
            raise FieldError("match", "say how to find the process")
        strategy = self.STRATEGIES[self.strategy.currentText()]
        field = {
            "pid_file": "pid_file",
            "process_name": "process_name",
            "cmdline": "cmdline_pattern",
        }[strategy]
        restart = self.restart.currentText()
        if restart != "no" and not self.start_cmd.text().strip():
            raise FieldError("start_command", "a restart policy needs a start command")
        body: dict[str, Any] = {
            "system_id": self.system.currentData(),
            "node_id": self.node.currentData(),
            "name": self.name.text().strip(),
            "strategy": strategy,
            field: self.match.text().strip(),
            "log_paths": parse_env(self.logs.toPlainText(), "log_paths"),
            "restart": restart,
            "start_order": self.start_order.value(),
        }
        if self.start_cmd.text().strip():
            body["start_command"] = self.start_cmd.text().strip()
        if self.stop_cmd.text().strip():
            body["stop_command"] = self.stop_cmd.text().strip()
        return body


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
        self, row: Row | None = None, scopes: Choices | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__("Edit alert rule" if row else "New alert rule", parent)
        self.setObjectName("alertRuleDialog")
        row = row or {}
        self.row = row
        self.scopes = scopes or {}
        self.name = QLineEdit(str(row.get("name", "")))
        self.enabled = QCheckBox("Evaluate this rule")
        self.enabled.setChecked(bool(row.get("enabled", True)))
        self.metric_box = QComboBox()
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.metric_box.setCurrentIndex(
            max(0, self.metric_box.findData(row.get("metric", "cpu_percent")))
        )
        self.op = QComboBox()
        self.op.addItems([">", "<", "==", "!="])
        self.op.setCurrentText(str(row.get("op", ">")))
        threshold = row.get("threshold", 90)
        self.threshold = QLineEdit(
            f"{threshold:g}" if isinstance(threshold, float) else str(threshold)
        )
        self.for_seconds = QDoubleSpinBox()
        self.for_seconds.setRange(0, 7 * 86400)
        self.for_seconds.setValue(float(row.get("for_seconds", 30)))
        self.for_seconds.setSuffix(" s")
        self.scope_kind = QComboBox()
        self.scope_kind.addItem("everything", "")
        for kind in ("system", "node", "instance"):
            self.scope_kind.addItem(kind, kind)
        self.scope_target = QComboBox()
        self.scope_target.setEditable(True)  # an id typed by hand works too
        self.scope_kind.currentIndexChanged.connect(lambda _: self._targets())
        scope = row.get("scope") or {}
        if scope:
            kind, value = next(iter(scope.items()))
            self.scope_kind.setCurrentIndex(
                max(0, self.scope_kind.findData(kind.removesuffix("_id")))
            )
            self._targets()
            i = self.scope_target.findData(value)
            if i >= 0:
                self.scope_target.setCurrentIndex(i)
            else:
                self.scope_target.setEditText(str(value))
        else:
            self._targets()
        self.severity = QComboBox()
        self.severity.addItems(["warning", "critical"])
        self.severity.setCurrentText(str(row.get("severity", "warning")))
        self.webhook = QLineEdit(str(row.get("webhook_url") or ""))
        self.webhook.setPlaceholderText("optional: https://… receives firing and resolved")
        self.metric_box.currentIndexChanged.connect(lambda _: self._metric_hint())
        self._metric_hint()
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
        if self.row.get("id"):
            body["id"] = self.row["id"]
        return body


class SilenceDialog(Form):
    """`POST /silences`: alerts matching stay visible but notify nobody for a while."""

    def __init__(self, alert: Row, parent: QWidget | None = None) -> None:
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


class LabelsDialog(Form):
    """A node's labels (`PATCH /nodes/{id}`), `key=value` comma separated."""

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


class LoginDialog(Form):
    """Master URL, user, password, TLS options; what was typed last is offered again."""

    def __init__(
        self, url: str = "", username: str = "admin", ca: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__("Connect to a GDOS master", parent)
        self.setObjectName("loginDialog")
        self.name_field = ""
        self.url = QLineEdit(url or "http://127.0.0.1:8080")
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
        url = self.url.text().strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise FieldError("url", "the master URL starts with http:// or https://")
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
