"""Forms: system, module, deploy, adopt, alert rule, user, log-in."""

from __future__ import annotations

import shlex
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from console.models.base import Row


class Form(QDialog):
    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(460)
        self.outer = QVBoxLayout(self)
        self.form = QFormLayout()
        self.outer.addLayout(self.form)
        self.problem = QLabel("")
        self.problem.setObjectName("formProblem")
        self.problem.hide()
        self.outer.addWidget(self.problem)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        self.outer.addWidget(self.buttons)

    def _accept(self) -> None:
        try:
            self.values()
        except ValueError as exc:
            self.problem.setText(str(exc))
            self.problem.show()
            return
        self.accept()

    def values(self) -> dict[str, Any]:
        raise NotImplementedError


def parse_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"environment line '{line.strip()}' is not NAME=value")
        env[key.strip()] = value
    return env


class SystemDialog(Form):
    def __init__(self, row: Row | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Edit system" if row else "New system", parent)
        self.name = QLineEdit(str((row or {}).get("name", "")))
        self.name.setReadOnly(row is not None)
        self.name.setPlaceholderText("letters, digits, . _ -")
        self.description = QPlainTextEdit(str((row or {}).get("description", "")))
        self.description.setMaximumHeight(90)
        self.form.addRow("Name", self.name)
        self.form.addRow("Description", self.description)

    def values(self) -> dict[str, Any]:
        name = self.name.text().strip()
        if not name:
            raise ValueError("a system needs a name")
        return {"name": name, "description": self.description.toPlainText().strip()}


class ModuleDialog(Form):
    def __init__(
        self, packages: dict[str, list[str]], row: Row | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__("Edit module" if row else "Add module", parent)
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
        self.form.addRow("Name", self.name)
        self.form.addRow("Package", self.package)
        self.form.addRow("Version", self.version)
        self.form.addRow("Start order", self.order)
        self.form.addRow("Environment", self.env)
        self.form.addRow("Arguments", self.args)

    def _versions(self, name: str) -> None:
        self.version.clear()
        self.version.addItem("newest")
        self.version.addItems(self.packages.get(name, []))

    def values(self) -> dict[str, Any]:
        name = self.name.text().strip()
        if not name:
            raise ValueError("a module needs a name")
        if not self.package.currentText():
            raise ValueError("upload a package first: a module runs a package")
        try:
            args = shlex.split(self.args.text()) if self.args.text().strip() else None
        except ValueError as exc:
            raise ValueError(f"arguments: {exc}") from None
        version = self.version.currentText()
        return {
            "name": name,
            "package": self.package.currentText(),
            "version": None if version == "newest" else version,
            "start_order": self.order.value(),
            "env": parse_env(self.env.toPlainText()),
            "args": args,
        }


class NodePicker(Form):
    """Pick one or more nodes (deploy a module, adopt on a node)."""

    def __init__(
        self, title: str, nodes: list[Row], multi: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(title, parent)
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
        self.form.addRow("Nodes", self.list)

    def values(self) -> dict[str, Any]:
        ids = [
            str(self.list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.list.count())
            if self.list.item(i).checkState() == Qt.CheckState.Checked
        ]
        if not ids:
            raise ValueError("tick at least one node")
        if not self.multi and len(ids) > 1:
            raise ValueError("tick one node")
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
        for label, w in (
            ("System", self.system),
            ("Node", self.node),
            ("Name", self.name),
            ("Find it by", self.strategy),
            ("Match", self.match),
            ("Start command", self.start_cmd),
            ("Stop command", self.stop_cmd),
            ("Restart", self.restart),
            ("Start order", self.start_order),
            ("Log files", self.logs),
        ):
            self.form.addRow(label, w)
        self._hint(self.strategy.currentText())

    def _hint(self, text: str) -> None:
        self.match.setPlaceholderText(self.HINTS[self.STRATEGIES[text]])

    def values(self) -> dict[str, Any]:
        if not self.system.currentData() or not self.node.currentData():
            raise ValueError("pick a system and a node")
        if not self.name.text().strip() or not self.match.text().strip():
            raise ValueError("a name and what to match are needed")
        strategy = self.STRATEGIES[self.strategy.currentText()]
        field = {
            "pid_file": "pid_file",
            "process_name": "process_name",
            "cmdline": "cmdline_pattern",
        }[strategy]
        restart = self.restart.currentText()
        if restart != "no" and not self.start_cmd.text().strip():
            raise ValueError("a restart policy needs a start command")
        body: dict[str, Any] = {
            "system_id": self.system.currentData(),
            "node_id": self.node.currentData(),
            "name": self.name.text().strip(),
            "strategy": strategy,
            field: self.match.text().strip(),
            "log_paths": parse_env(self.logs.toPlainText()),
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
        for label, w in (
            ("Name", self.name),
            ("", self.enabled),
            ("Metric", self.metric_box),
            ("Condition", self.op),
            ("Threshold", self.threshold),
            ("For", self.for_seconds),
            ("Scope", self.scope_kind),
            ("Of", self.scope_target),
            ("Severity", self.severity),
            ("Webhook URL", self.webhook),
        ):
            self.form.addRow(label, w)

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
            raise ValueError(f"pick the {kind} the rule watches")
        return {f"{kind}_id": str(ident)}

    def values(self) -> dict[str, Any]:
        if not self.name.text().strip():
            raise ValueError("a rule needs a name")
        metric = str(self.metric_box.currentData())
        raw = self.threshold.text().strip()
        threshold: float | str
        if metric in ("cpu_percent", "rss_bytes"):
            try:
                threshold = float(raw)
            except ValueError:
                raise ValueError("the threshold of a numeric metric is a number") from None
        else:
            if self.op.currentText() not in ("==", "!="):
                raise ValueError(f"{METRICS[metric]} compares with == or != only")
            if not raw:
                raise ValueError("give the state the rule compares with")
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
        self.form.addRow("Silence", self.what)
        self.form.addRow("For", self.minutes)
        self.form.addRow("Comment", self.comment)

    def values(self) -> dict[str, Any]:
        what = str(self.what.currentData() or "")
        if not what:
            raise ValueError("this alert has neither a rule nor a target to match")
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


class UserDialog(Form):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("New user", parent)
        self.username = QLineEdit()
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.role = QComboBox()
        self.role.addItems(["viewer", "operator", "admin"])
        self.form.addRow("Username", self.username)
        self.form.addRow("Password", self.password)
        self.form.addRow("Role", self.role)

    def values(self) -> dict[str, Any]:
        if not self.username.text().strip():
            raise ValueError("a user needs a name")
        if len(self.password.text()) < 8:
            raise ValueError("the password needs at least 8 characters")
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
        self.url = QLineEdit(url or "http://127.0.0.1:8080")
        self.username = QLineEdit(username)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.ca = QLineEdit(ca)
        self.ca.setPlaceholderText("system certificates")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca, 1)
        ca_row.addWidget(browse)
        self.insecure = QCheckBox("Do not verify the certificate (testing only)")
        self.form.addRow("Master URL", self.url)
        self.form.addRow("Username", self.username)
        self.form.addRow("Password", self.password)
        self.form.addRow("CA certificate", ca_row)
        self.form.addRow("", self.insecure)
        (self.password if username else self.username).setFocus()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "CA certificate", "", "Certificates (*.pem *.crt);;All files (*)"
        )
        if path:
            self.ca.setText(path)

    def values(self) -> dict[str, Any]:
        url = self.url.text().strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError("the master URL starts with http:// or https://")
        if not self.username.text().strip() or not self.password.text():
            raise ValueError("give a username and a password")
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
        self.problem.setText(text)
        self.problem.show()
