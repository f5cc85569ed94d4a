"""Releases (API.md "Releases"): an instance's own settings, upgrades, rollouts, rollbacks and
their history. Plain JSON in and out, so that fields a newer master adds reach the caller."""

from __future__ import annotations

from typing import Any

from console.client.transport import Transport


class Releases(Transport):
    async def update_instance(self, instance_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """The instance's own settings (`env`, `args`, `user`), applied at its next start."""
        return await self._json("PATCH", f"/instances/{instance_id}", changes)

    async def upgrade_instance(self, instance_id: str, version: str | None) -> dict[str, Any]:
        return await self._json("POST", f"/instances/{instance_id}/upgrade", {"version": version})

    async def module(self, module_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/modules/{module_id}")

    async def rollout_module(self, module_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operation of kind `rollout` (202): follow it like a batch start."""
        return await self._json("POST", f"/modules/{module_id}/rollout", body)

    async def rollback_module(self, module_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", f"/modules/{module_id}/rollback", body)

    async def rollout_system(self, system_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Several modules as one operation, level by level: `{"versions": {name: version}}`."""
        return await self._json("POST", f"/systems/{system_id}/rollout", body)

    async def module_releases(self, module_id: str) -> list[dict[str, Any]]:
        """Every rollout and rollback of the module, newest first."""
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
