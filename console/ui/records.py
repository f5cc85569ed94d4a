"""Logs, alerts, audit, backups and users pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QFont, QFontDatabase, QKeySequence, QShortcut, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console import fmt
from console.message import info
from console.models.base import RowTableModel
from console.services.records import (
    AlertsService,
    AuditService,
    BackupsService,
    LogsService,
    RecordService,
    UsersService,
)
from console.ui import common
from console.ui.dialogs import AlertRuleDialog, Choices, SilenceDialog, UserDialog

MAX_LOG_CHARS = 2_000_000


def _watch_availability(service: RecordService, notice: common.Notice, feature: str) -> None:
    service.availability.connect(
        lambda f, ok, message: notice.say("" if ok else message) if f == feature else None
    )


class LogsPage(QWidget):
    def __init__(self, logs: LogsService, instances: RowTableModel) -> None:
        super().__init__()
        self.logs, self.instances = logs, instances
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Logs"))
        top = QHBoxLayout()
        self.instance = QComboBox()
        self.instance.setMinimumWidth(260)
        self.instance.activated.connect(lambda _: self._pick_instance())
        self.file = QComboBox()
        self.file.setMinimumWidth(200)
        self.file.activated.connect(lambda _: self._open())
        self.follow = QCheckBox("Follow")
        self.follow.toggled.connect(self.logs.follow)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search (Enter: next, Shift+Enter: previous)")
        self.search.returnPressed.connect(lambda: self.find_text(backward=False))
        QShortcut(QKeySequence("Shift+Return"), self.search, lambda: self.find_text(backward=True))
        refresh = QPushButton("Reload")
        refresh.clicked.connect(self._open)
        for w, stretch in (
            (QLabel("Instance"), 0),
            (self.instance, 1),
            (QLabel("Log"), 0),
            (self.file, 1),
            (self.follow, 0),
            (refresh, 0),
            (self.search, 2),
        ):
            top.addWidget(w, stretch)
        lay.addLayout(top)
        self.notice = common.Notice()
        lay.addWidget(self.notice)
        self.text = QPlainTextEdit()
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setMaximumBlockCount(50_000)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.text.setFont(font)
        lay.addWidget(self.text, 1)
        find = QShortcut(QKeySequence.StandardKey.Find, self)
        find.activated.connect(self._focus_search)
        logs.files_listed.connect(self._files)
        logs.text_replaced.connect(self._replace)
        logs.text_appended.connect(self._append)
        _watch_availability(logs, self.notice, "logs")
        instances.modelReset.connect(self._fill_instances)
        instances.rowsInserted.connect(lambda *_: self._fill_instances())

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _fill_instances(self) -> None:
        current = self.instance.currentData()
        self.instance.clear()
        for row in sorted(self.instances.rows(), key=lambda r: str(r.get("name"))):
            self.instance.addItem(f"{row.get('name')} ({row.get('node_name')})", row["id"])
        if current:
            self.instance.setCurrentIndex(max(0, self.instance.findData(current)))

    def show_instance(self, instance_id: str) -> None:
        self._fill_instances()
        self.instance.setCurrentIndex(max(0, self.instance.findData(instance_id)))
        self._pick_instance()

    def _pick_instance(self) -> None:
        iid = self.instance.currentData()
        if iid:
            self.logs.list_files(str(iid))

    def _files(self, instance_id: str, files: list[dict[str, Any]]) -> None:
        if instance_id != self.instance.currentData():
            return
        self.file.clear()
        for f in files:
            if f.get("error"):
                label = f"{f['name']} (refused: {f['error']})"
            elif f.get("exists") is False:
                label = f"{f['name']} (not written yet)"
            else:
                label = f"{f['name']} ({fmt.size(f.get('size', 0))})"
            self.file.addItem(label, f["name"])
            self.file.setItemData(
                self.file.count() - 1, f.get("path", ""), Qt.ItemDataRole.ToolTipRole
            )
        if files:
            self._open()

    def _open(self) -> Any:
        iid, name = self.instance.currentData(), self.file.currentData()
        if iid and name:
            return self.logs.open(str(iid), str(name), self.follow.isChecked())
        return None

    def _replace(self, text: str) -> None:
        self.text.setPlainText(text[-MAX_LOG_CHARS:])
        self.text.moveCursor(QTextCursor.MoveOperation.End)

    def _append(self, chunk: str) -> None:
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(chunk)
        if at_end:
            bar.setValue(bar.maximum())

    def find_text(self, backward: bool = False) -> bool:
        needle = self.search.text()
        if not needle:
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        if self.text.find(needle, flags):
            return True
        cursor = self.text.textCursor()
        cursor.movePosition(
            QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start
        )
        self.text.setTextCursor(cursor)
        found = self.text.find(needle, flags)
        if not found:
            info(f"'{needle}' is not in this log")
        return bool(found)


class AlertsPage(QWidget):
    def __init__(
        self,
        alerts: AlertsService,
        settings: QSettings | None = None,
        scopes: Callable[[], Choices] | None = None,
    ) -> None:
        super().__init__()
        self.alerts = alerts
        self.scopes = scopes or dict
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Alerts"))
        self.notice = common.Notice()
        lay.addWidget(self.notice)
        _watch_availability(alerts, self.notice, "alerts")
        tabs = QTabWidget()
        self.tabs = tabs
        self.active = common.TablePanel(alerts.alerts, "alerts", settings)
        self.ack_action = self.active.add_action("Acknowledge", self.ack, "Ctrl+K")
        self.silence_action = self.active.add_action("Silence…", self.silence, "Ctrl+Shift+M")
        self.only_firing = QCheckBox("Only firing")
        self.only_firing.toggled.connect(self._only_firing)
        self.active.toolbar.addWidget(self.only_firing)
        tabs.addTab(self.active, "Firing and history")
        self.rules = common.TablePanel(alerts.rules, "alertRules", settings)
        self.rules.add_action("New rule…", self.new_rule, "Ctrl+N", needs_selection=False)
        self.rules.add_action("Edit…", self.edit_rule, "F2")
        self.toggle_action = self.rules.add_action("Enable / disable", self.toggle_rule, "Ctrl+E")
        self.rules.add_action("Delete", self.delete_rule, "Del")
        self.rules.view.doubleClicked.connect(lambda _: self.edit_rule())
        tabs.addTab(self.rules, "Rules")
        self.silences = common.TablePanel(alerts.silences, "silences", settings)
        self.silences.add_action("End silence", self.unsilence, "Del")
        _watch_availability(alerts, self.silences.notice, "silences")
        tabs.addTab(self.silences, "Silences")
        lay.addWidget(tabs, 1)

    def _only_firing(self, on: bool) -> None:
        col = self.alerts.alerts.column("state")
        self.active.filter.setEnabled(not on)
        self.active.proxy.set_text("firing" if on else self.active.filter.text(), col if on else -1)

    def ack(self) -> Any:
        keys = self.active.selected_keys()
        return self.alerts.ack(keys) if keys else None

    def silence(self, body: dict[str, Any] | None = None) -> Any:
        rows = self.active.selected_rows()
        if body is None:
            if not rows:
                return None
            dlg = SilenceDialog(rows[0], self)
            if not dlg.exec():
                return None
            body = dlg.values()
        return self.alerts.silence(body)

    def new_rule(self, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            dlg = AlertRuleDialog(scopes=self.scopes(), parent=self)
            if not dlg.exec():
                return None
            body = dlg.values()
        return self.alerts.save_rule(body)

    def edit_rule(self) -> Any:
        rows = self.rules.selected_rows()
        if rows:
            dlg = AlertRuleDialog(rows[0], self.scopes(), self)
            if dlg.exec():
                return self.alerts.save_rule(dlg.values())
        return None

    def toggle_rule(self) -> Any:
        rows = self.rules.selected_rows()
        if rows:
            return self.alerts.enable_rule(str(rows[0]["id"]), not rows[0].get("enabled", True))
        return None

    def delete_rule(self) -> None:
        rows = self.rules.selected_rows()
        if rows and common.confirm(
            self,
            "Delete rule",
            f"Delete alert rule {rows[0].get('name')}? Its firing alerts resolve; "
            "past alerts stay in the history.",
        ):
            self.alerts.delete_rule(str(rows[0]["id"]))

    def unsilence(self) -> None:
        keys = self.silences.selected_keys()
        if keys and common.confirm(
            self, "End silence", "End this silence now? Matching alerts notify again."
        ):
            self.alerts.unsilence(keys[0])


class AuditPage(QWidget):
    def __init__(self, audit: AuditService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.audit = audit
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Audit"))
        filters = QHBoxLayout()
        self.since = QComboBox()
        for label, hours in (
            ("last hour", 1),
            ("last day", 24),
            ("last week", 168),
            ("everything", 0),
        ):
            self.since.addItem(label, hours)
        self.since.setCurrentIndex(1)
        self.actor = QLineEdit()
        self.actor.setPlaceholderText("actor (exact)")
        self.action = QLineEdit()
        self.action.setPlaceholderText("action (exact, e.g. POST /api/v1/systems)")
        self.limit = QSpinBox()
        self.limit.setRange(10, 100_000)
        self.limit.setValue(1000)
        apply = QPushButton("Apply")
        apply.clicked.connect(self.load)
        export = QPushButton("Export CSV…")
        export.clicked.connect(self.export)
        for w in (
            QLabel("Since"),
            self.since,
            self.actor,
            self.action,
            QLabel("Limit"),
            self.limit,
            apply,
            export,
        ):
            filters.addWidget(w)
        self.actor.returnPressed.connect(self.load)
        self.action.returnPressed.connect(self.load)
        lay.addLayout(filters)
        self.table = common.TablePanel(
            audit.model,
            "audit",
            settings,
            filter_hint="Search these rows…",
            sort=("ts", Qt.SortOrder.DescendingOrder),
        )
        _watch_availability(audit, self.table.notice, "audit")
        lay.addWidget(self.table, 1)

    def filters(self) -> dict[str, Any]:
        hours = int(self.since.currentData() or 0)
        since = (
            (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
            if hours
            else None
        )
        return {
            "since": since,
            "actor": self.actor.text().strip() or None,
            "action": self.action.text().strip() or None,
            "limit": self.limit.value(),
        }

    def load(self) -> Any:
        return self.audit.load(self.filters())

    def export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export audit trail", "gdos-audit.csv", "CSV (*.csv)"
        )
        if path:
            self.audit.filters = self.filters()
            self.audit.export_csv(path)


class BackupsPage(QWidget):
    def __init__(self, backups: BackupsService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.backups = backups
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Backups"))
        self.table = common.TablePanel(
            backups.model, "backups", settings, sort=("created_at", Qt.SortOrder.DescendingOrder)
        )
        t = self.table
        self.create_action = t.add_action(
            "Create backup", backups.create, "Ctrl+B", needs_selection=False
        )
        t.add_action("Download…", self.download, "Ctrl+S")
        self.restore_action = t.add_action("Restore…", self.restore)
        t.add_action("Delete…", self.delete, "Del")
        t.add_action("Refresh", backups.reload, needs_selection=False)
        _watch_availability(backups, t.notice, "backups")
        hint = QLabel(
            "Backups are consistent copies of the master's database, taken while it runs. "
            "Restoring one puts every system, module, instance, rule and user back as it was; "
            "the state just before is kept as a pre-restore backup. Downloading, deleting and "
            "restoring need the admin role."
        )
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        lay.addWidget(t, 1)

    def download(self, path: str | None = None) -> Any:
        keys = self.table.selected_keys()
        if not keys:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save backup", f"gdos-backup-{keys[0]}.db", "SQLite (*.db)"
            )
        return self.backups.download(keys[0], path) if path else None

    def delete(self) -> Any:
        keys = self.table.selected_keys()
        if keys and common.confirm(self, "Delete backup", f"Delete backup {keys[0]} for good?"):
            return self.backups.delete(keys[0])
        return None

    def restore(self) -> Any:
        rows = self.table.selected_rows()
        if not rows:
            return None
        if not common.confirm(
            self,
            "Restore",
            f"Restore backup {rows[0]['id']} from {fmt.when(rows[0].get('created_at'))}? "
            "Everything changed since then (systems, modules, instances, rules, users) goes back "
            "to that moment. Running services the backup does not know keep running and are "
            "listed on their nodes as unmanaged.",
        ):
            return None
        return self.backups.restore(str(rows[0]["id"]))


class UsersPage(QWidget):
    def __init__(self, users: UsersService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.users = users
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Users"))
        self.table = common.TablePanel(users.model, "users", settings)
        self.table.add_action("New user…", self.new_user, "Ctrl+N", needs_selection=False)
        self.table.add_action("Delete", self.delete, "Del")
        _watch_availability(users, self.table.notice, "users")
        lay.addWidget(self.table, 1)

    def new_user(self) -> None:
        dlg = UserDialog(self)
        if dlg.exec():
            v = dlg.values()
            self.users.create(v["username"], v["password"], v["role"])

    def delete(self) -> None:
        keys = self.table.selected_keys()
        if keys and common.confirm(
            self, "Delete user", f"Delete user {keys[0]}? Their sessions end now."
        ):
            self.users.delete(keys[0])
