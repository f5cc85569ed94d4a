"""Alerts, logs, audit, backups and users: the operations records.

Each service says through `availability(feature, ok, message)` whether this master has the
endpoints (404/405 on the route: "not available on this master") so a view can show that in
words instead of an error box per click.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal

from console.client import ClientError
from console.message import action, async_slot, info, warning
from console.models.tables import (
    AlertRuleTableModel,
    AlertTableModel,
    AuditTableModel,
    BackupTableModel,
    SilenceTableModel,
    UserTableModel,
)
from console.services.session import Session

T = TypeVar("T")
NOT_AVAILABLE = "not available on this master"


class RecordService(QObject):
    availability = Signal(str, bool, str)  # feature, available, message

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.available: dict[str, bool] = {}

    async def guarded(self, feature: str, call: Awaitable[T]) -> T | None:
        """Run a call; a missing endpoint marks the feature unavailable instead of failing."""
        try:
            result = await call
        except ClientError as exc:
            if exc.endpoint_missing:
                self._set(feature, False, f"{feature}: {NOT_AVAILABLE} (it needs a newer master)")
                return None
            raise
        self._set(feature, True, "")
        return result

    def _set(self, feature: str, ok: bool, message: str) -> None:
        if self.available.get(feature) != ok:
            self.available[feature] = ok
            self.availability.emit(feature, ok, message)


class AlertsService(RecordService):
    fired = Signal(dict)  # a new firing alert (for a tray message or the overview)

    def __init__(self, session: Session, tick_ms: int = 100) -> None:
        super().__init__(session)
        self.rules = AlertRuleTableModel(self, tick_ms)
        self.alerts = AlertTableModel(self, tick_ms)
        self.silences = SilenceTableModel(self, tick_ms)
        self.rule_names: dict[str, str] = {}
        self._told: set[str] = set()
        session.on("alert", self.on_alert)
        session.resynced.connect(self.reload)
        session.logged_out.connect(
            lambda: [m.set_rows([]) for m in (self.rules, self.alerts, self.silences)]
        )

    def on_alert(self, data: dict[str, Any]) -> None:
        if "id" not in data:
            return
        row = dict(data)
        row.setdefault("rule_name", self.rule_names.get(str(row.get("rule_id")), ""))
        self.alerts.update(row)
        alert_id = str(row["id"])
        if row.get("state") == "firing":
            if alert_id not in self._told and self.alerts.row(alert_id) is None:
                self.fired.emit(row)
            self._told.add(alert_id)  # once per alert, however many events repeat it
        else:
            self._told.discard(alert_id)

    @async_slot()
    @action("loading alerts")
    async def reload(self) -> None:
        client = self.session.require()
        rules = await self.guarded("alerts", client.alert_rules())
        if rules is None:
            return
        self.rule_names = {r.id: r.name for r in rules}
        self.rules.set_rows(r.model_dump() for r in rules)
        alerts = await client.alerts() or []
        self.alerts.set_rows(
            {**a.model_dump(), "rule_name": self.rule_names.get(a.rule_id or "", "")}
            for a in alerts
        )
        silences = await self.guarded("silences", client.silences())
        self.silences.set_rows(s.model_dump() for s in silences or [])

    @async_slot(dict)
    @action("saving the alert rule")
    async def save_rule(self, body: dict[str, Any]) -> None:
        client = self.session.require()
        rule_id = body.pop("id", None)
        if rule_id:
            rule = await client.update_alert_rule(str(rule_id), body)
        else:
            rule = await client.create_alert_rule(body)
        self.rule_names[rule.id] = rule.name
        self.rules.update(rule.model_dump())

    @async_slot(str)
    @action("deleting the alert rule")
    async def delete_rule(self, rule_id: str) -> None:
        await self.session.require().delete_alert_rule(rule_id)
        self.rules.remove(rule_id)

    @async_slot(list)
    @action("acknowledging")
    async def ack(self, alert_ids: list[str]) -> None:
        client = self.session.require()
        await asyncio.gather(*(client.ack_alert(a) for a in alert_ids))
        for a in alert_ids:
            self.alerts.update({"id": a, "acked": True, "acked_by": self.session.username})

    @async_slot(dict)
    @action("creating the silence")
    async def silence(self, body: dict[str, Any]) -> None:
        s = await self.guarded("silences", self.session.require().create_silence(body))
        if s is not None:
            self.silences.update(s.model_dump())

    @async_slot(str)
    @action("removing the silence")
    async def unsilence(self, silence_id: str) -> None:
        await self.session.require().delete_silence(silence_id)
        self.silences.remove(silence_id)


class LogsService(RecordService):
    """One log at a time: tail it, then follow it (events when the master sends them, else a poll)."""

    files_listed = Signal(str, list)  # instance id, [{"name","path","size"}]
    text_replaced = Signal(str)
    text_appended = Signal(str)

    def __init__(self, session: Session, poll_ms: int = 2000) -> None:
        super().__init__(session)
        self.instance_id = ""
        self.name = ""
        self.tail_bytes = 256 * 1024
        self.following = False
        self._last_text = ""
        self._last_event = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._poll)
        session.on("log", self.on_log)

    @async_slot(str)
    @action("listing logs")
    async def list_files(self, instance_id: str) -> None:
        files = await self.guarded("logs", self.session.require().logs(instance_id))
        if files is not None:
            self.files_listed.emit(instance_id, [f.model_dump() for f in files])

    @async_slot(str, str)
    @action("reading the log")
    async def open(self, instance_id: str, name: str) -> None:
        await self._unfollow()
        self.instance_id, self.name = instance_id, name
        text = await self.guarded(
            "logs", self.session.require().log_text(instance_id, name, self.tail_bytes)
        )
        if text is not None:
            self._last_text = text
            self.text_replaced.emit(text)

    @async_slot(bool)
    @action("following the log")
    async def follow(self, on: bool) -> None:
        if not on:
            await self._unfollow()
            return
        if not self.instance_id:
            return
        self.following = True
        await self.session.subscribe([f"log:{self.instance_id}:{self.name}"])
        self._timer.start()

    async def _unfollow(self) -> None:
        self._timer.stop()
        if self.following and self.instance_id:
            await self.session.unsubscribe([f"log:{self.instance_id}:{self.name}"])
        self.following = False

    def on_log(self, data: dict[str, Any]) -> None:
        if str(data.get("instance_id")) != self.instance_id or str(data.get("name")) != self.name:
            return
        if data.get("error"):  # the master stopped following it, and says why
            warning(f"following {self.name} stopped: {data['error']}")
            self._timer.stop()
            self.following = False
            return
        chunk = str(data.get("data") or data.get("text") or data.get("chunk") or "")
        self._last_event = time.monotonic()
        if data.get("reset"):  # rotated or truncated: what follows starts a new file
            self._last_text = chunk
            self.text_replaced.emit(chunk)
        elif chunk:
            self._last_text += chunk
            self.text_appended.emit(chunk)

    def _poll(self) -> None:
        if time.monotonic() - self._last_event > 5:  # no live events lately: read the tail
            self._refresh()

    @async_slot()
    @action("reading the log")
    async def _refresh(self) -> None:
        if not self.instance_id or self.session.client is None:
            return
        text = await self.session.client.log_text(self.instance_id, self.name, self.tail_bytes)
        if text != self._last_text:
            if text.startswith(self._last_text):
                self.text_appended.emit(text[len(self._last_text) :])
            else:
                self.text_replaced.emit(text)
            self._last_text = text


class AuditService(RecordService):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = AuditTableModel(self)
        self.filters: dict[str, Any] = {}

    @async_slot(dict)
    @action("loading the audit trail")
    async def load(self, filters: dict[str, Any]) -> None:
        self.filters = {k: v for k, v in filters.items() if v}
        rows = await self.guarded("audit", self.session.require().audit(**self.filters))
        if rows is not None:
            self.model.set_rows({**r.model_dump(), "_key": str(n)} for n, r in enumerate(rows))

    @async_slot(str)
    @action("exporting the audit trail")
    async def export_csv(self, path: str) -> None:
        filters = {k: v for k, v in self.filters.items() if k != "limit"}
        text = await self.session.require().audit_csv(**filters)
        Path(path).write_text(text, encoding="utf-8")
        info(f"audit trail saved to {path}")


class BackupsService(RecordService):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = BackupTableModel(self)

    @async_slot()
    @action("listing backups")
    async def reload(self) -> None:
        rows = await self.guarded("backups", self.session.require().backups())
        if rows is not None:
            self.model.set_rows(r.model_dump() for r in rows)

    @async_slot()
    @action("creating a backup")
    async def create(self) -> None:
        b = await self.guarded("backups", self.session.require().create_backup())
        if b is not None:
            self.model.update(b.model_dump())
            info(f"backup {b.id} created")

    @async_slot(str, str)
    @action("downloading the backup")
    async def download(self, backup_id: str, path: str) -> None:
        await self.session.require().download_backup(backup_id, Path(path))
        info(f"backup saved to {path}")

    @async_slot(str)
    @action("restoring the backup")
    async def restore(self, backup_id: str) -> None:
        await self.session.require().restore_backup(backup_id)
        info(f"backup {backup_id} restored; reloading")
        self.session.resynced.emit()


class UsersService(RecordService):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = UserTableModel(self)

    @async_slot()
    @action("listing users")
    async def reload(self) -> None:
        if not self.session.is_admin:
            self._set("users", False, "users: only an admin can manage users")
            return
        rows = await self.guarded("users", self.session.require().users())
        if rows is not None:
            self.model.set_rows(r.model_dump() for r in rows)

    @async_slot(str, str, str)
    @action("creating the user")
    async def create(self, username: str, password: str, role: str) -> None:
        user = await self.session.require().create_user(username, password, role)
        self.model.update(user.model_dump())
        info(f"user {username} created")

    @async_slot(str)
    @action("deleting the user")
    async def delete(self, username: str) -> None:
        await self.session.require().delete_user(username)
        self.model.remove(username)
