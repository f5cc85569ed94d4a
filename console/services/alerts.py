"""Alert rules, alerts (firing and history, kept live by `alert` events), acks and silences."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from PySide6.QtCore import Signal

from console.message import action, async_slot, info
from console.models.rows import AlertRow, AlertRuleRow, SilenceRow, as_row
from console.models.tables import AlertRuleTableModel, AlertTableModel, SilenceTableModel
from console.services.feature import FeatureService
from console.services.session import Session

Namer = Callable[[str, str], str]  # (kind "system"|"node"|"instance", id) -> a name


class AlertsService(FeatureService):
    fired = Signal(dict)  # a new firing alert (for the status bar or a tray message)

    def __init__(self, session: Session, tick_ms: int = 100, history: int = 500) -> None:
        super().__init__(session)
        self.rules = AlertRuleTableModel(self, tick_ms)
        self.alerts = AlertTableModel(self, tick_ms)
        self.silences = SilenceTableModel(self, tick_ms)
        self.history = history
        self.names: Namer = lambda kind, ident: ident
        self._seen: set[str] = set()  # alert ids already told about
        session.on("alert", self.on_alert)
        session.on("alert_rule", self.on_rule)
        session.resynced.connect(self.reload)
        session.logged_out.connect(
            lambda: [m.set_rows([]) for m in (self.rules, self.alerts, self.silences)]
        )

    def on_alert(self, data: dict[str, Any]) -> None:
        alert_id = data.get("id")
        if not alert_id:
            return
        self.alerts.update(cast(AlertRow, data))
        if data.get("state") == "firing" and alert_id not in self._seen:
            self._seen.add(alert_id)
            if not data.get("silenced"):
                self.fired.emit(dict(data))

    def on_rule(self, data: dict[str, Any]) -> None:
        """A rule made, changed or deleted (by anyone): the rules table follows."""
        if not data.get("id"):
            return
        rule = cast(AlertRuleRow, data)
        self.rules.update(rule if rule.get("deleted") else self._rule_row(rule.copy()))

    def _rule_row(self, rule: AlertRuleRow) -> AlertRuleRow:
        """The rule with its scope by name."""
        scope = rule.get("scope") or {}
        rule["scope_text"] = ", ".join(
            f"{kind.removesuffix('_id')} {self.names(kind.removesuffix('_id'), str(ident))}"
            for kind, ident in scope.items()
        )
        return rule

    def _silence_row(self, silence: SilenceRow) -> SilenceRow:
        """The silence with its matcher by name."""
        parts = []
        for key, value in sorted((silence.get("matcher") or {}).items()):
            kind = key.removesuffix("_id")
            if key == "rule_id":
                row = self.rules.row(str(value))
                parts.append(f"rule {row['name'] if row else value}")
            elif kind in ("system", "node", "instance"):
                parts.append(f"{kind} {self.names(kind, str(value))}")
            else:
                parts.append(f"{key} {value}")
        silence["matcher_text"] = ", ".join(parts)
        return silence

    @async_slot()
    @action("loading alerts")
    async def reload(self) -> None:
        client = self.session.require()
        rules = await self.guarded("alerts", client.alert_rules())
        if rules is None:
            return
        self.rules.set_rows(self._rule_row(as_row(r, AlertRuleRow)) for r in rules)
        alerts = await client.alerts(limit=self.history)
        self._seen.update(a.id for a in alerts)
        self.alerts.set_rows(as_row(a, AlertRow) for a in alerts)
        silences = await self.guarded("silences", client.silences())
        self.silences.set_rows(self._silence_row(as_row(s, SilenceRow)) for s in silences or [])

    @async_slot(dict)
    @action("saving the alert rule")
    async def save_rule(self, body: dict[str, Any]) -> str:
        """Create a rule, or (with `id`) change the given fields of one."""
        client = self.session.require()
        body = dict(body)
        rule_id = body.pop("id", None)
        if rule_id:
            rule = await client.update_alert_rule(str(rule_id), body)
        else:
            rule = await client.create_alert_rule(body)
        self.rules.update(self._rule_row(as_row(rule, AlertRuleRow)))
        info(f"alert rule {rule.name} saved")
        return rule.id

    @async_slot(str, bool)
    @action("switching the alert rule")
    async def enable_rule(self, rule_id: str, enabled: bool) -> None:
        rule = await self.session.require().update_alert_rule(rule_id, {"enabled": enabled})
        self.rules.update(self._rule_row(as_row(rule, AlertRuleRow)))

    @async_slot(str)
    @action("deleting the alert rule")
    async def delete_rule(self, rule_id: str) -> None:
        await self.session.require().delete_alert_rule(rule_id)
        self.rules.remove(rule_id)

    @async_slot(list)
    @action("acknowledging")
    async def ack(self, alert_ids: list[str]) -> None:
        client = self.session.require()
        for alert in await asyncio.gather(*(client.ack_alert(a) for a in alert_ids)):
            self.alerts.update(as_row(alert, AlertRow))

    @async_slot(dict)
    @action("creating the silence")
    async def silence(self, body: dict[str, Any]) -> str | None:
        """`{"matcher": {...}, "duration_seconds" | "ends_at", "comment"}`."""
        s = await self.guarded("silences", self.session.require().create_silence(body))
        if s is None:
            return None
        self.silences.update(self._silence_row(as_row(s, SilenceRow)))
        info("silenced: matching alerts are shown but notify nobody until it ends")
        return s.id

    @async_slot(str)
    @action("ending the silence")
    async def unsilence(self, silence_id: str) -> None:
        await self.session.require().delete_silence(silence_id)
        self.silences.remove(silence_id)
