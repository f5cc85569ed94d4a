"""Releases: roll a module (or a whole system) out to a version, roll it back, read its history,
and set an instance's own env/args/user. The operations a rollout or rollback starts are shown
and followed by the operations service, like a system's start."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar, cast

from PySide6.QtCore import QObject

from console.client import ClientError
from console.errors import in_the_way
from console.message import action, async_slot, error, info
from console.models.rows import OperationRow, ReleaseRow
from console.models.tables import ReleaseTableModel
from console.services.feature import NOT_AVAILABLE
from console.services.fleet import FleetService
from console.services.operations import OperationsService
from console.services.session import Session

T = TypeVar("T")


async def _needs_releases(call: Awaitable[T]) -> T:
    """The call, or a sentence saying this master has no releases when the route is missing;
    an operation in the way is named with what to do here (the master names its URL)."""
    try:
        return await call
    except ClientError as exc:
        if exc.endpoint_missing:
            raise ClientError(
                f"releases are {NOT_AVAILABLE} (it needs a newer master)", code="not_available"
            ) from None
        raise in_the_way(exc) from None


def instance_history(releases: list[ReleaseRow], instance_id: str) -> list[ReleaseRow]:
    """The rollouts and rollbacks that moved one instance, with its own versions, result and
    error in place of the module's."""
    out: list[ReleaseRow] = []
    for rel in releases:
        for inst in rel.get("instances") or []:
            if inst.get("instance_id") == instance_id:
                mine = cast(dict[str, Any], inst)
                out.append(
                    {
                        **rel,
                        "from_version": mine.get("from"),
                        "to_version": mine.get("to"),
                        "state": str(mine.get("state") or rel.get("state") or ""),
                        "error": mine.get("error"),
                    }
                )
    return out


class ReleasesService(QObject):
    def __init__(
        self, session: Session, fleet: FleetService, operations: OperationsService
    ) -> None:
        super().__init__()
        self.session = session
        self.fleet = fleet
        self.operations = operations

    # -- rollouts and rollbacks -----------------------------------------------------------

    @async_slot(str, dict)
    @action("starting the rollout")
    async def rollout_module(self, module_id: str, body: dict[str, Any]) -> str:
        """Begin the rollout (refusals reach the caller) and follow it in the background."""
        op = await _needs_releases(self.session.require().rollout_module(module_id, body))
        return self._begin(op, self.fleet.module_names.get(module_id, module_id))

    @async_slot(str, dict)
    @action("starting the rollout")
    async def rollout_system(self, system_id: str, body: dict[str, Any]) -> str:
        op = await _needs_releases(self.session.require().rollout_system(system_id, body))
        return self._begin(op, self.fleet.system_names.get(system_id, system_id))

    @async_slot(str, dict)
    @action("starting the rollback")
    async def rollback_module(self, module_id: str, body: dict[str, Any]) -> str:
        op = await _needs_releases(self.session.require().rollback_module(module_id, body))
        return self._begin(op, self.fleet.module_names.get(module_id, module_id))

    def _begin(self, data: dict[str, Any], name: str) -> str:
        op = cast(OperationRow, {**data, "id": str(data.get("id") or data["operation_id"])})
        self.operations.show(op)
        self._follow(op, name)
        return op["id"]

    @async_slot(dict, str)
    async def _follow(self, op: OperationRow, name: str) -> None:
        """Until the operation ends; then say how it went (a failure in the master's words)."""
        try:
            last = await self.operations.follow(op)
        except ClientError as exc:
            error(f"following the {op.get('kind', 'operation')} of {name} failed: {exc}")
            return
        kind = str(last.get("kind") or op.get("kind") or "operation")
        if last.get("state") == "failed":
            why = last.get("error") or "see its steps"
            error(f"the {kind} of {name} failed: {why}")
        elif last.get("state") == "succeeded":
            info(f"the {kind} of {name} succeeded")

    # -- history --------------------------------------------------------------------------

    @async_slot(object, str, str)
    @action("loading the release history")
    async def load_history(
        self, model: ReleaseTableModel, module_id: str, instance_id: str = ""
    ) -> int:
        """Fill `model` with the module's rollouts and rollbacks (or the instance's part in
        them); how many."""
        data = await _needs_releases(self.session.require().module_releases(module_id))
        rows = cast(list[ReleaseRow], data)
        if instance_id:
            rows = instance_history(rows, instance_id)
        model.set_rows(rows)
        model.flush()
        return len(rows)

    @async_slot(str)
    @action("reading the module's releases")
    async def kept_versions(self, module_id: str) -> list[str]:
        """Versions the module ran before (newest first), which its nodes may still keep."""
        data = await _needs_releases(self.session.require().module_releases(module_id))
        seen: list[str] = []
        for rel in data:
            for version in (rel.get("from_version"), rel.get("to_version")):
                if version and version not in seen:
                    seen.append(str(version))
        return seen

    # -- one instance ---------------------------------------------------------------------

    @async_slot(str, dict)
    @action("saving the instance's settings")
    async def update_settings(self, instance_id: str, changes: dict[str, Any]) -> None:
        """Its own env, args and user over its module's; they apply at its next start."""
        data = await _needs_releases(self.session.require().update_instance(instance_id, changes))
        self.fleet.on_instance(data)
        name = data.get("name", instance_id)
        info(f"settings of {name} saved; they apply at its next start")
