"""Alerts, logs, audit, backups and users: the operations records.

Each service says through `availability(feature, ok, message)` whether this master has the
endpoints (404/405 on the route: "not available on this master") so a view can show that in
words instead of an error box per click.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal

from console import fmt
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


Namer = Callable[[str, str], str]  # (kind "system"|"node"|"instance", id) -> a name


class AlertsService(RecordService):
    """Rules, alerts (firing and history, kept live by `alert` events), ack, silences."""

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
        self.alerts.update(data)
        if data.get("state") == "firing" and alert_id not in self._seen:
            self._seen.add(alert_id)
            if not data.get("silenced"):
                self.fired.emit(dict(data))

    def on_rule(self, data: dict[str, Any]) -> None:
        """A rule made, changed or deleted (by anyone): the rules table follows."""
        if not data.get("id"):
            return
        self.rules.update(data if data.get("deleted") else self._rule_row(dict(data)))

    def _rule_row(self, rule: dict[str, Any]) -> dict[str, Any]:
        scope = rule.get("scope") or {}
        rule["scope_text"] = ", ".join(
            f"{kind.removesuffix('_id')} {self.names(kind.removesuffix('_id'), str(ident))}"
            for kind, ident in scope.items()
        )
        return rule

    def _silence_row(self, silence: dict[str, Any]) -> dict[str, Any]:
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
        self.rules.set_rows(self._rule_row(r.model_dump()) for r in rules)
        alerts = await client.alerts(limit=self.history)
        self._seen.update(a.id for a in alerts)
        self.alerts.set_rows(a.model_dump() for a in alerts)
        silences = await self.guarded("silences", client.silences())
        self.silences.set_rows(self._silence_row(s.model_dump()) for s in silences or [])

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
        self.rules.update(self._rule_row(rule.model_dump()))
        info(f"alert rule {rule.name} saved")
        return rule.id

    @async_slot(str, bool)
    @action("switching the alert rule")
    async def enable_rule(self, rule_id: str, enabled: bool) -> None:
        rule = await self.session.require().update_alert_rule(rule_id, {"enabled": enabled})
        self.rules.update(self._rule_row(rule.model_dump()))

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
            self.alerts.update(alert.model_dump())

    @async_slot(dict)
    @action("creating the silence")
    async def silence(self, body: dict[str, Any]) -> str | None:
        """`{"matcher": {...}, "duration_seconds" | "ends_at", "comment"}`."""
        s = await self.guarded("silences", self.session.require().create_silence(body))
        if s is None:
            return None
        self.silences.update(self._silence_row(s.model_dump()))
        info("silenced: matching alerts are shown but notify nobody until it ends")
        return s.id

    @async_slot(str)
    @action("ending the silence")
    async def unsilence(self, silence_id: str) -> None:
        await self.session.require().delete_silence(silence_id)
        self.silences.remove(silence_id)


class LogsService(RecordService):
    """One log at a time: its tail, then followed live through `log:<instance>:<name>` events.

    What is shown is the file's bytes up to `end`; live chunks carry their offset in the file,
    so a chunk already shown is skipped, an overlapping one is trimmed, and a gap (missed
    while reconnecting) is filled from the tail. A slow check asks the master for the size
    alone (`tail_bytes=0`) and catches up if the stream said nothing.
    """

    files_listed = Signal(str, list)  # instance id, [{"name","path","size","exists","error"}]
    size_known = Signal(str, str, int)  # instance id, log name, its size now
    text_replaced = Signal(str)
    text_appended = Signal(str)

    def __init__(self, session: Session, check_ms: int = 5000) -> None:
        super().__init__(session)
        self.instance_id = ""
        self.name = ""
        self.tail_bytes = 256 * 1024
        self.following = False
        self.end = 0  # where what is shown ends, as an offset in the file
        self._chunk_seen = False
        self._timer = QTimer(self)
        self._timer.setInterval(check_ms)
        self._timer.timeout.connect(self._tick)
        session.on("log", self.on_log)
        session.resynced.connect(self._resynced)

    @property
    def key(self) -> str:
        return f"log:{self.instance_id}:{self.name}"

    @async_slot(str)
    @action("listing logs")
    async def list_files(self, instance_id: str) -> None:
        files = await self.guarded("logs", self.session.require().logs(instance_id))
        if files is not None:
            self.files_listed.emit(instance_id, [f.model_dump() for f in files])

    @async_slot(str, str, bool)
    @action("reading the log")
    async def open(self, instance_id: str, name: str, follow: bool = False) -> None:
        """Show the tail of a log; follow it live if asked (or if the last one was followed)."""
        follow = follow or self.following
        await self._unfollow()
        self.instance_id, self.name = instance_id, name
        await self._reload()
        if follow:
            await self.follow(True)

    async def _reload(self) -> None:
        tail = await self.guarded(
            "logs", self.session.require().log_tail(self.instance_id, self.name, self.tail_bytes)
        )
        if tail is not None:
            self.end = tail.end
            self.text_replaced.emit(tail.text)
            self.size_known.emit(self.instance_id, self.name, tail.size)

    @async_slot(bool)
    @action("following the log")
    async def follow(self, on: bool) -> None:
        if not on:
            await self._unfollow()
            return
        if not self.instance_id or self.following:
            return
        await self.session.subscribe([self.key])
        self.following = True
        self._timer.start()
        await self._check()  # what was written between the tail and the subscription

    async def _unfollow(self) -> None:
        self._timer.stop()
        if self.following and self.instance_id:
            self.following = False
            await self.session.unsubscribe([self.key])
        self.following = False

    def on_log(self, data: dict[str, Any]) -> None:
        if data.get("instance_id") != self.instance_id or data.get("name") != self.name:
            return
        if data.get("error"):  # the master stopped following it, and says why
            warning(f"following {self.name} stopped: {data['error']}")
            self._timer.stop()
            self.following = False
            return
        text = str(data.get("data") or "")
        start = int(data.get("offset") or 0)
        stop = start + len(text.encode())
        self._chunk_seen = True
        if data.get("reset"):  # rotated or truncated: what follows starts a new file
            self.end = stop
            self.text_replaced.emit(text)
        elif stop <= self.end:
            return  # shown already (the tail had it)
        elif start > self.end:
            self._catch_up()  # a gap: fill it from the tail, this chunk included
        else:
            self.text_appended.emit(text.encode()[self.end - start :].decode(errors="replace"))
            self.end = stop
            self.size_known.emit(self.instance_id, self.name, stop)

    def _resynced(self) -> None:
        if self.following:
            self._catch_up()

    @async_slot()
    @action("reading the log")
    async def _catch_up(self) -> None:
        await self._check(force=True)

    @async_slot()
    @action("reading the log")
    async def _tick(self) -> None:
        await self._check()
        client = self.session.client
        if self.instance_id and client is not None and client.token is not None:
            with contextlib.suppress(ClientError):  # the other logs' sizes: labels stay true
                files = await client.logs(self.instance_id)
                self.files_listed.emit(self.instance_id, [f.model_dump() for f in files])

    async def _check(self, force: bool = False) -> None:
        """Append what the stream did not bring (or reload after a rotation)."""
        client = self.session.client
        if not self.instance_id or client is None or client.token is None:
            return
        seen, self._chunk_seen = self._chunk_seen, False
        if seen and not force:
            return  # the stream is doing its job
        try:
            size = (await client.log_tail(self.instance_id, self.name, 0)).size
        except ClientError:
            return  # the node may be away; the next check tries again
        self.size_known.emit(self.instance_id, self.name, size)
        if size == self.end:
            return
        missing = size - self.end
        if missing < 0 or missing > self.tail_bytes:
            await self._reload()
            return
        tail = await client.log_tail(self.instance_id, self.name, missing)
        if tail.offset != self.end:  # it moved meanwhile: start over from its tail
            await self._reload()
            return
        self.end = tail.end
        if tail.text:
            self.text_appended.emit(tail.text)


def _audit_key(row: dict[str, Any], n: int) -> str:
    return str(row["id"]) if row.get("id") is not None else f"#{n}"


class AuditService(RecordService):
    """The audit rows the filters select; new ones arrive as `audit` events and are added."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = AuditTableModel(self)
        self.filters: dict[str, Any] = {}
        self.loaded = False
        session.on("audit", self.on_audit)

    @async_slot(dict)
    @action("loading the audit trail")
    async def load(self, filters: dict[str, Any]) -> None:
        self.filters = {k: v for k, v in filters.items() if v}
        rows = await self.guarded("audit", self.session.require().audit(**self.filters))
        if rows is not None:
            self.loaded = True
            self.model.set_rows(
                {**r.model_dump(), "_key": _audit_key(r.model_dump(), n)}
                for n, r in enumerate(rows)
            )

    def on_audit(self, data: dict[str, Any]) -> None:
        if not self.loaded or data.get("id") is None:
            return
        f = self.filters
        if (f.get("actor") and data.get("actor") != f["actor"]) or (
            f.get("action") and data.get("action") != f["action"]
        ):
            return
        self.model.update({**data, "_key": _audit_key(data, 0)})

    @async_slot(str)
    @action("exporting the audit trail")
    async def export_csv(self, path: str) -> None:
        filters = {k: v for k, v in self.filters.items() if k != "limit"}
        text = await self.session.require().audit_csv(**filters)
        Path(path).write_text(text, encoding="utf-8")
        info(f"audit trail saved to {path}")


class BackupsService(RecordService):
    restored = Signal(dict)  # RestoreOut: the master now serves the backup's state

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
    async def create(self) -> str | None:
        b = await self.guarded("backups", self.session.require().create_backup())
        if b is None:
            return None
        self.model.update(b.model_dump())
        info(f"backup {b.id} created ({fmt.size(b.size)})")
        return b.id

    @async_slot(str, str)
    @action("downloading the backup")
    async def download(self, backup_id: str, path: str) -> None:
        await self.session.require().download_backup(backup_id, Path(path))
        info(f"backup saved to {path}")

    @async_slot(str)
    @action("deleting the backup")
    async def delete(self, backup_id: str) -> None:
        await self.session.require().delete_backup(backup_id)
        self.model.remove(backup_id)

    @async_slot(str)
    @action("restoring the backup")
    async def restore(self, backup_id: str) -> str:
        out = await self.session.require().restore_backup(backup_id)
        info(
            f"backup {out.restored} restored; the state before it is kept as backup "
            f"{out.safety_backup}"
        )
        self.restored.emit(out.model_dump())
        self.session.resynced.emit()  # everything may have changed: reload it all
        return out.safety_backup


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
