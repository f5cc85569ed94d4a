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
    QHBoxLayout,
    QLabel,
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


def file_label(f: dict[str, Any]) -> str:
    if f.get("error"):
        return f"{f['name']} (refused: {f['error']})"
    if f.get("exists") is False:
        return f"{f['name']} (not written yet)"
    return f"{f['name']} ({fmt.size(f.get('size', 0))})"


def worth_showing(files: list[dict[str, Any]]) -> int:
    """The first log with something in it (stderr when only it has), else the first."""
    for n, f in enumerate(files):
        if not f.get("error") and f.get("exists") is not False and f.get("size"):
            return n
    return 0


def _watch_availability(service: RecordService, notice: common.Notice, feature: str) -> None:
    service.availability.connect(
        lambda f, ok, message: notice.say("" if ok else message) if f == feature else None
    )


class LogsPage(QWidget):
    def __init__(self, logs: LogsService, instances: RowTableModel) -> None:
        super().__init__()
        self.logs, self.instances = logs, instances
        self._keep = False  # the next listing keeps the log shown (Reload), else picks one
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Logs"))
        top = QHBoxLayout()
        self.instance = QComboBox()
        self.instance.setMinimumWidth(260)
        self.instance.activated.connect(lambda _: self._new_instance())
        self.file = QComboBox()
        self.file.setMinimumWidth(200)
        self.file.activated.connect(lambda _: self._open())
        self.follow = QCheckBox("Follow")
        self.follow.toggled.connect(self.logs.follow)
        self.search = common.SearchBox()
        self.search.setPlaceholderText("Search (Enter: next, Shift+Enter: previous)")
        self.search.returnPressed.connect(lambda: self.find_text(backward=False))
        QShortcut(QKeySequence("Shift+Return"), self.search, lambda: self.find_text(backward=True))
        self.reload_button = refresh = QPushButton("Reload")
        common.on_trigger(refresh.clicked, self.reload)
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
        logs.size_known.connect(self._size)
        logs.text_replaced.connect(self._replace)
        logs.text_appended.connect(self._append)
        _watch_availability(logs, self.notice, "logs")
        instances.modelReset.connect(self._fill_instances)
        instances.rowsInserted.connect(lambda *_: self._fill_instances())

    def _new_instance(self) -> None:
        self.file.clear()
        self._pick_instance()

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
        self.file.clear()
        self._pick_instance()

    def reload(self) -> None:
        """Reload: the list of logs (their sizes) and the tail of the one shown."""
        self._pick_instance(keep=True)

    def _pick_instance(self, keep: bool = False) -> None:
        iid = self.instance.currentData()
        if iid:
            self._keep = keep
            self.logs.list_files(str(iid))

    def _files(self, instance_id: str, files: list[dict[str, Any]]) -> None:
        if instance_id != self.instance.currentData():
            return
        names = [f["name"] for f in files]
        if names == [self.file.itemData(i) for i in range(self.file.count())]:
            for i, f in enumerate(files):  # the same logs: their sizes are news
                self.file.setItemText(i, file_label(f))
            if self._keep:
                self._keep = False
                self._open()
            return
        self.file.clear()
        for f in files:
            self.file.addItem(file_label(f), f["name"])
            self.file.setItemData(
                self.file.count() - 1, f.get("path", ""), Qt.ItemDataRole.ToolTipRole
            )
        if files:
            self.file.setCurrentIndex(worth_showing(files))
            self._open()

    def _size(self, instance_id: str, name: str, size: int) -> None:
        if instance_id == self.instance.currentData():
            i = self.file.findData(name)
            if i >= 0:
                self.file.setItemText(i, file_label({"name": name, "size": size}))

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
        self.new_rule_action = self.rules.add_action(
            "New rule…", self.new_rule, "Ctrl+N", needs_selection=False
        )
        self.edit_rule_action = self.rules.add_action("Edit…", self.edit_rule, "F2")
        self.toggle_action = self.rules.add_action(
            "Enable / disable", self.toggle_rule, "Ctrl+Shift+E"
        )
        self.delete_rule_action = self.rules.add_action("Delete", self.delete_rule, "Del")
        self.rules.view.doubleClicked.connect(lambda _: self.edit_rule())
        tabs.addTab(self.rules, "Rules")
        self.silences = common.TablePanel(alerts.silences, "silences", settings)
        self.unsilence_action = self.silences.add_action("End silence", self.unsilence, "Del")
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

    def silence(self) -> SilenceDialog | None:
        rows = self.active.selected_rows()
        if not rows:
            return None
        dlg = SilenceDialog(rows[0], self)
        dlg.submit = self.alerts.silence
        dlg.open()
        return dlg

    def new_rule(self) -> AlertRuleDialog:
        self.tabs.setCurrentWidget(self.rules)
        dlg = AlertRuleDialog(scopes=self.scopes(), parent=self)
        dlg.submit = self.alerts.save_rule
        dlg.submitted.connect(lambda rule_id: self.rules.select_key(str(rule_id)))
        dlg.open()
        return dlg

    def edit_rule(self) -> AlertRuleDialog | None:
        rows = self.rules.selected_rows()
        if not rows:
            return None
        dlg = AlertRuleDialog(rows[0], self.scopes(), self)
        dlg.submit = self.alerts.save_rule
        dlg.open()
        return dlg

    def toggle_rule(self) -> Any:
        rows = self.rules.selected_rows()
        if rows:
            return self.alerts.enable_rule(str(rows[0]["id"]), not rows[0].get("enabled", True))
        return None

    def delete_rule(self) -> Any:
        rows = self.rules.selected_rows()
        if not rows:
            return None
        rule_id = str(rows[0]["id"])
        return common.confirm(
            self,
            "Delete rule",
            f"Delete alert rule {rows[0].get('name')}? Its firing alerts resolve; "
            "past alerts stay in the history.",
            lambda: self.alerts.delete_rule(rule_id),
        )

    def unsilence(self) -> Any:
        keys = self.silences.selected_keys()
        if not keys:
            return None
        return common.confirm(
            self,
            "End silence",
            "End this silence now? Matching alerts notify again.",
            lambda: self.alerts.unsilence(keys[0]),
        )


class AuditPage(QWidget):
    def __init__(self, audit: AuditService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.audit = audit
        self.settings = settings
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
        self.actor = common.SearchBox()
        self.actor.setPlaceholderText("actor (exact)")
        self.action = common.SearchBox()
        self.action.setPlaceholderText("action (exact, e.g. POST /api/v1/systems)")
        self.limit = QSpinBox()
        self.limit.setRange(10, 100_000)
        self.limit.setValue(1000)
        self.apply_button = apply = QPushButton("Apply")
        common.on_trigger(apply.clicked, self.load)
        self.export_button = export = QPushButton("Export CSV…")
        common.on_trigger(export.clicked, self.export)
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

    def export(self) -> Any:
        return common.save_file(
            self,
            "Export audit trail",
            "gdos-audit.csv",
            "CSV (*.csv)",
            self.export_to,
            self.settings,
        )

    def export_to(self, path: str) -> Any:
        self.audit.filters = self.filters()
        return self.audit.export_csv(path)


class BackupsPage(QWidget):
    def __init__(self, backups: BackupsService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.backups = backups
        self.settings = settings
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Backups"))
        self.table = common.TablePanel(
            backups.model, "backups", settings, sort=("created_at", Qt.SortOrder.DescendingOrder)
        )
        t = self.table
        self.create_action = t.add_action(
            "Create backup", backups.create, "Ctrl+B", needs_selection=False
        )
        self.download_action = t.add_action("Download…", self.download, "Ctrl+S")
        self.restore_action = t.add_action("Restore…", self.restore)
        self.delete_action = t.add_action("Delete…", self.delete, "Del")
        self.refresh_action = t.add_action("Refresh", backups.reload, needs_selection=False)
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

    def download(self) -> Any:
        keys = self.table.selected_keys()
        if not keys:
            return None
        return common.save_file(
            self,
            "Save backup",
            f"gdos-backup-{keys[0]}.db",
            "SQLite (*.db)",
            self.download_to,
            self.settings,
        )

    def download_to(self, path: str) -> Any:
        keys = self.table.selected_keys()
        return self.backups.download(keys[0], path) if keys else None

    def delete(self) -> Any:
        keys = self.table.selected_keys()
        if not keys:
            return None
        return common.confirm(
            self,
            "Delete backup",
            f"Delete backup {keys[0]} for good?",
            lambda: self.backups.delete(keys[0]),
        )

    def restore(self) -> Any:
        rows = self.table.selected_rows()
        if not rows:
            return None
        backup_id = str(rows[0]["id"])
        return common.confirm(
            self,
            "Restore",
            f"Restore backup {backup_id} from {fmt.when(rows[0].get('created_at'))}? "
            "Everything changed since then (systems, modules, instances, rules, users) goes back "
            "to that moment. Running services the backup does not know keep running and are "
            "listed on their nodes as unmanaged.",
            lambda: self.backups.restore(backup_id),
        )


class UsersPage(QWidget):
    def __init__(self, users: UsersService, settings: QSettings | None = None) -> None:
        super().__init__()
        self.users = users
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Users"))
        self.table = common.TablePanel(users.model, "users", settings)
        self.new_action = self.table.add_action(
            "New user…", self.new_user, "Ctrl+N", needs_selection=False
        )
        self.delete_action = self.table.add_action("Delete", self.delete, "Del")
        _watch_availability(users, self.table.notice, "users")
        lay.addWidget(self.table, 1)

    def new_user(self) -> UserDialog:
        dlg = UserDialog(self)
        dlg.submit = lambda v: self.users.create(v["username"], v["password"], v["role"])
        dlg.open()
        return dlg

    def delete(self) -> Any:
        keys = self.table.selected_keys()
        if not keys:
            return None
        return common.confirm(
            self,
            "Delete user",
            f"Delete user {keys[0]}? Their sessions end now.",
            lambda: self.users.delete(keys[0]),
        )
