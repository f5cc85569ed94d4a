"""Alerts: firing and past alerts (acknowledge, silence), rules, silences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QCheckBox, QTabWidget, QVBoxLayout, QWidget

from console.services.alerts import AlertsService
from console.ui import common
from console.ui.dialogs.alert_rule import AlertRuleDialog, Choices
from console.ui.dialogs.silence import SilenceDialog
from console.ui.table_panel import TablePanel


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
        self.notice.follow(alerts.availability, "alerts")
        tabs = QTabWidget()
        self.tabs = tabs
        self.active = TablePanel(alerts.alerts, "alerts", settings)
        self.ack_action = self.active.add_action("Acknowledge", self.ack, "Ctrl+K")
        self.silence_action = self.active.add_action("Silence…", self.silence, "Ctrl+Shift+M")
        self.only_firing = QCheckBox("Only firing")
        self.only_firing.toggled.connect(self._only_firing)
        self.active.toolbar.addWidget(self.only_firing)
        tabs.addTab(self.active, "Firing and history")
        self.rules = TablePanel(alerts.rules, "alertRules", settings)
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
        self.silences = TablePanel(alerts.silences, "silences", settings)
        self.unsilence_action = self.silences.add_action("End silence", self.unsilence, "Del")
        self.silences.notice.follow(alerts.availability, "silences")
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
        return self.rules.confirm_first(
            "Delete rule",
            lambda rule: (
                f"Delete alert rule {rule.get('name')}? Its firing alerts resolve; "
                "past alerts stay in the history."
            ),
            self.alerts.delete_rule,
        )

    def unsilence(self) -> Any:
        return self.silences.confirm_first(
            "End silence",
            lambda _: "End this silence now? Matching alerts notify again.",
            self.alerts.unsilence,
        )
