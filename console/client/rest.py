"""`Client`: one typed method per endpoint of the GDOS API (API.md), parsed into the protocol's
models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.client.events import EventStream
from console.client.logs import Logs
from console.client.transport import API
from console.client.tus import Uploads
from protocol.monitoring import (
    AlertOut,
    AlertRuleOut,
    InstanceMetricsOut,
    InstanceSample,
    NodeMetricsOut,
    NodeSample,
    SilenceOut,
)
from protocol.rest import (
    AuditOut,
    InstanceOut,
    JoinTokenOut,
    LoginOut,
    MasterOut,
    ModuleOut,
    NodeOut,
    OperationOut,
    OperationStarted,
    PackageOut,
    SystemDetail,
    SystemOut,
    UserOut,
)
from protocol.rest_records import BackupOut, RestoreOut


class Client(Uploads, Logs):
    """An async client of one master. `token` is set by `login()` or given directly; uploads
    (tus.py) and logs (logs.py) are its methods too."""

    # -- auth and users -------------------------------------------------------------------

    async def healthz(self) -> dict[str, Any]:
        data: dict[str, Any] = (await self.request("GET", "/healthz", absolute=True)).json()
        return data

    async def login(self, username: str, password: str) -> LoginOut:
        out = await self._send(
            "POST", "/auth/login", LoginOut, {"username": username, "password": password}
        )
        self.token = out.token
        self.user = out.user
        return out

    async def users(self) -> list[UserOut]:
        return await self._list("/users", UserOut)

    async def create_user(self, username: str, password: str, role: str) -> UserOut:
        body = {"username": username, "password": password, "role": role}
        return await self._send("POST", "/users", UserOut, body)

    async def delete_user(self, username: str) -> None:
        await self.request("DELETE", f"/users/{username}")

    # -- masters --------------------------------------------------------------------------

    async def masters(self) -> list[MasterOut]:
        """The masters sharing this one's database, the answering master first."""
        return await self._list("/masters", MasterOut)

    # -- nodes ----------------------------------------------------------------------------

    async def nodes(self) -> list[NodeOut]:
        return await self._list("/nodes", NodeOut)

    async def node(self, node_id: str) -> NodeOut:
        return await self._get(f"/nodes/{node_id}", NodeOut)

    async def set_node_labels(self, node_id: str, labels: dict[str, str]) -> NodeOut:
        return await self._send("PATCH", f"/nodes/{node_id}", NodeOut, {"labels": labels})

    async def delete_node(self, node_id: str) -> None:
        await self.request("DELETE", f"/nodes/{node_id}")

    async def node_metrics(self, node_id: str, seconds: float = 300) -> list[NodeSample]:
        """Per-second samples for the recent window, per-minute averages before it."""
        out = await self._get(f"/nodes/{node_id}/metrics", NodeMetricsOut, seconds=seconds)
        return out.samples

    # -- packages -------------------------------------------------------------------------

    async def packages(self, name: str | None = None) -> list[PackageOut]:
        """Grouped by name, newest upload first (the first of a name is the newest)."""
        return await self._list("/packages", PackageOut, name=name)

    async def package(self, package_id: str) -> PackageOut:
        return await self._get(f"/packages/{package_id}", PackageOut)

    async def delete_package(self, package_id: str) -> None:
        await self.request("DELETE", f"/packages/{package_id}")

    async def download_package(self, package_id: str, dest: Path) -> Path:
        await self._download(f"{API}/packages/{package_id}/download", dest)
        return dest

    # -- systems and modules --------------------------------------------------------------

    async def systems(self) -> list[SystemOut]:
        return await self._list("/systems", SystemOut)

    async def system(self, system_id: str) -> SystemDetail:
        return await self._get(f"/systems/{system_id}", SystemDetail)

    async def create_system(self, name: str, description: str = "") -> SystemOut:
        body = {"name": name, "description": description}
        return await self._send("POST", "/systems", SystemOut, body)

    async def update_system(self, system_id: str, description: str) -> SystemOut:
        body = {"description": description}
        return await self._send("PATCH", f"/systems/{system_id}", SystemOut, body)

    async def delete_system(self, system_id: str) -> None:
        await self.request("DELETE", f"/systems/{system_id}")

    async def create_module(
        self,
        system_id: str,
        name: str,
        package: str,
        version: str | None = None,
        start_order: int = 1,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> ModuleOut:
        body = {
            "name": name,
            "package": package,
            "version": version,
            "start_order": start_order,
            "env": env or {},
            "args": args,
        }
        return await self._send("POST", f"/systems/{system_id}/modules", ModuleOut, body)

    async def update_module(self, module_id: str, **changes: Any) -> ModuleOut:
        return await self._send("PATCH", f"/modules/{module_id}", ModuleOut, changes)

    async def delete_module(self, module_id: str) -> None:
        await self.request("DELETE", f"/modules/{module_id}")

    async def start_system(
        self, system_id: str, ready_timeout: float | None = None
    ) -> OperationStarted:
        """Start every instance level by level (202); follow it with `operation` events."""
        body = {"ready_timeout": ready_timeout} if ready_timeout is not None else None
        return await self._send("POST", f"/systems/{system_id}/start", OperationStarted, body)

    async def stop_system(self, system_id: str) -> OperationStarted:
        return await self._send("POST", f"/systems/{system_id}/stop", OperationStarted)

    async def operation(self, operation_id: str) -> OperationOut:
        return await self._get(f"/operations/{operation_id}", OperationOut)

    async def operations(
        self, system_id: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[OperationOut]:
        return await self._list(
            "/operations", OperationOut, system_id=system_id, state=state, limit=limit
        )

    # -- instances ------------------------------------------------------------------------

    async def instances(
        self,
        system_id: str | None = None,
        node_id: str | None = None,
        state: str | None = None,
        name: str | None = None,
    ) -> list[InstanceOut]:
        return await self._list(
            "/instances",
            InstanceOut,
            system_id=system_id,
            node_id=node_id,
            state=state,
            name=name,
        )

    async def instance(self, instance_id: str) -> InstanceOut:
        return await self._get(f"/instances/{instance_id}", InstanceOut)

    async def deploy(self, module_id: str, node_id: str) -> InstanceOut:
        body = {"module_id": module_id, "node_id": node_id}
        return await self._send("POST", "/instances", InstanceOut, body)

    async def start_instance(self, instance_id: str) -> InstanceOut:
        return await self._send("POST", f"/instances/{instance_id}/start", InstanceOut)

    async def stop_instance(self, instance_id: str) -> InstanceOut:
        return await self._send("POST", f"/instances/{instance_id}/stop", InstanceOut)

    async def restart_instance(self, instance_id: str) -> InstanceOut:
        return await self._send("POST", f"/instances/{instance_id}/restart", InstanceOut)

    async def destroy_instance(self, instance_id: str, force: bool = False) -> InstanceOut:
        path = f"/instances/{instance_id}" + ("?force=true" if force else "")
        return await self._send("DELETE", path, InstanceOut)

    async def adopt(self, body: dict[str, Any]) -> InstanceOut:
        return await self._send("POST", "/instances/adopt", InstanceOut, body)

    # -- releases (API.md "Releases"): plain JSON, whatever fields this master adds ----------

    async def update_instance(self, instance_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """The instance's own settings (`env`, `args`, `user`), applied at its next start."""
        return await self._json("PATCH", f"/instances/{instance_id}", changes)

    async def upgrade_instance(self, instance_id: str, version: str | None) -> dict[str, Any]:
        return await self._json("POST", f"/instances/{instance_id}/upgrade", {"version": version})

    async def rollout_module(self, module_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operation of kind `rollout` (202): follow it like a batch start."""
        return await self._json("POST", f"/modules/{module_id}/rollout", body)

    async def rollback_module(self, module_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", f"/modules/{module_id}/rollback", body)

    async def rollout_system(self, system_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Several modules as one operation, level by level: `{"versions": {name: version}}`."""
        return await self._json("POST", f"/systems/{system_id}/rollout", body)

    async def module_releases(self, module_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (
            await self.request("GET", f"/modules/{module_id}/releases")
        ).json()
        return data

    async def resume_operation(self, operation_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/operations/{operation_id}/resume")

    async def cancel_operation(self, operation_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/operations/{operation_id}/cancel")

    async def operation_data(self, operation_id: str) -> dict[str, Any]:
        """An operation of any kind as the master sends it (rollouts carry more fields)."""
        return await self._json("GET", f"/operations/{operation_id}")

    async def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = (await self.request(method, path, json_body=body)).json()
        return data

    async def instance_metrics(
        self, instance_id: str, seconds: float = 300
    ) -> list[InstanceSample]:
        path = f"/instances/{instance_id}/metrics"
        return (await self._get(path, InstanceMetricsOut, seconds=seconds)).samples

    # -- alerts ---------------------------------------------------------------------------

    async def alert_rules(self) -> list[AlertRuleOut]:
        return await self._list("/alert-rules", AlertRuleOut)

    async def create_alert_rule(self, body: dict[str, Any]) -> AlertRuleOut:
        return await self._send("POST", "/alert-rules", AlertRuleOut, body)

    async def update_alert_rule(self, rule_id: str, changes: dict[str, Any]) -> AlertRuleOut:
        """Only the given fields change."""
        return await self._send("PATCH", f"/alert-rules/{rule_id}", AlertRuleOut, changes)

    async def delete_alert_rule(self, rule_id: str) -> None:
        await self.request("DELETE", f"/alert-rules/{rule_id}")

    async def alerts(
        self,
        state: str | None = None,
        since: str | None = None,
        rule_id: str | None = None,
        target_id: str | None = None,
        limit: int = 500,
    ) -> list[AlertOut]:
        """Firing and resolved alerts, newest first."""
        return await self._list(
            "/alerts",
            AlertOut,
            state=state,
            since=since,
            rule_id=rule_id,
            target_id=target_id,
            limit=limit,
        )

    async def ack_alert(self, alert_id: str) -> AlertOut:
        return await self._send("POST", f"/alerts/{alert_id}/ack", AlertOut)

    async def silences(self, include_expired: bool = False) -> list[SilenceOut]:
        params = {"all": "true"} if include_expired else {}
        return await self._list("/silences", SilenceOut, **params)

    async def create_silence(self, body: dict[str, Any]) -> SilenceOut:
        """`{"matcher": {...}, "duration_seconds" | "ends_at", "comment"}`."""
        return await self._send("POST", "/silences", SilenceOut, body)

    async def delete_silence(self, silence_id: str) -> None:
        await self.request("DELETE", f"/silences/{silence_id}")

    # -- audit and backups ----------------------------------------------------------------

    async def audit(
        self,
        since: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 500,
    ) -> list[AuditOut]:
        return await self._list(
            "/audit", AuditOut, since=since, actor=actor, action=action, limit=limit
        )

    async def verify_audit(self) -> dict[str, Any]:
        """`{"ok": true, "count", "head"}` or `{"ok": false, "count", "broken": {"id", "reason"}}`."""
        return await self._json("GET", "/audit/verify")

    async def create_join_token(
        self, ttl_seconds: float | None = 24 * 3600.0, max_uses: int | None = None
    ) -> JoinTokenOut:
        body = {"ttl_seconds": ttl_seconds, "max_uses": max_uses}
        return await self._send("POST", "/join-tokens", JoinTokenOut, body)

    async def audit_csv(
        self,
        since: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 100_000,
    ) -> str:
        params = {"since": since, "actor": actor, "action": action, "limit": limit}
        return (await self.request("GET", "/audit", params={**params, "format": "csv"})).text

    async def backups(self) -> list[BackupOut]:
        return await self._list("/backups", BackupOut)

    async def create_backup(self) -> BackupOut:
        return await self._send("POST", "/backups", BackupOut)

    async def delete_backup(self, backup_id: str) -> None:
        await self.request("DELETE", f"/backups/{backup_id}")

    async def download_backup(self, backup_id: str, dest: Path) -> Path:
        await self._download(f"{API}/backups/{backup_id}/download", dest)
        return dest

    async def restore_backup(self, backup_id: str) -> RestoreOut:
        """Admin only; the master serves the restored state at once (no restart)."""
        return await self._send("POST", f"/backups/{backup_id}/restore", RestoreOut)

    # -- the event stream -----------------------------------------------------------------

    def events(self) -> EventStream:
        return EventStream(self)
