"""Releases: per-instance settings, the upgrade of one instance, rollouts and rollbacks of
modules and systems, pausing and cancelling them, and a module's release history."""

from collections import Counter
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.api.instances import get_instance
from master.api.systems import get_module, get_system
from master.db import models
from master.services import instance_settings
from master.services.rollout_plan import Target
from master.services.serializers import instance_out
from protocol.errors import ErrorCode, GdosError
from protocol.launch import LaunchError, check_total
from protocol.rest import InstanceOut, OperationOut, OperationStarted
from protocol.rest_releases import (
    InstancePatch,
    ReleaseOut,
    RollbackIn,
    RolloutIn,
    RolloutSettings,
    SystemRolloutIn,
    UpgradeIn,
)

if TYPE_CHECKING:
    from master.services.wiring import Services

router = APIRouter(prefix="/api/v1", tags=["releases"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]


@router.patch("/instances/{instance_id}", response_model=InstanceOut)
def update_instance(
    instance_id: Id, body: InstancePatch, _: Operator, s: SessionDep, svc: ServicesDep
) -> InstanceOut:
    """Its own settings over its module's: `env` entries, `args`, `user`. Applied at its next
    start (it shows `drift: true` until then) and kept across releases."""
    inst = get_instance(s, instance_id)
    if inst.adopted:
        raise GdosError(
            ErrorCode.INVALID_STATE,
            f"{inst.name} was adopted: its command is its own (adopt it again to change it)",
        )
    given = body.model_dump(exclude_unset=True)
    if "env" in given:
        inst.override_env = given["env"] or None
    if "args" in given:
        inst.override_args = given["args"]
    if "user" in given:
        inst.override_user = given["user"]
    mod = s.get(models.Module, inst.module_id) if inst.module_id else None
    merged = instance_settings.settings_for(mod, inst)
    try:  # the body alone was checked; with the module's entries it must still fit one start
        check_total(merged.env, merged.args)
    except LaunchError as exc:
        where = exc.where or "env"
        raise GdosError(ErrorCode.VALIDATION_FAILED, f"{where}: {exc}", {"field": where}) from None
    instance_settings.refresh_drift(s, [inst])
    s.commit()
    svc.orchestrator.feed.publish(inst)
    return instance_out(inst)


@router.post("/instances/{instance_id}/upgrade", response_model=InstanceOut, status_code=202)
async def upgrade_instance(
    instance_id: Id,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
    body: UpgradeIn | None = None,
) -> InstanceOut:
    """Fetch and unpack beside the running release, then stop -> switch -> start (a stopped
    instance only switches). A failure lands on the instance's `last_error`; the running
    release keeps running when the new one cannot even be prepared."""
    inst = get_instance(s, instance_id)
    svc.rollouts.refuse_if_busy(inst.system_id, only_releases=True)
    version = body.version if body else None
    svc.releases.upgrade(s, inst, version)
    request.state.audit_detail = {"from": inst.version, "to": version or "module's"}
    return instance_out(inst)


def _started(op_out: OperationOut, request: Request, target: str) -> OperationStarted:
    request.state.audit_target = target
    request.state.audit_detail = {"operation": op_out.id, "instances": len(op_out.steps)}
    return OperationStarted(operation_id=op_out.id, **op_out.model_dump())


def _running_version(s: Session, mod: models.Module, moving_to: str) -> str | None:
    """What a rollout to `moving_to` moves the module away from: the most common version its
    instances run other than `moving_to` (a tie goes to the module's own), else its own setting."""
    versions = Counter(
        v
        for v in s.scalars(
            select(models.Instance.version).where(models.Instance.module_id == mod.id)
        )
        if v and v != moving_to
    )
    if not versions:
        return mod.version
    top = max(versions.values())
    tied = [v for v, n in versions.items() if n == top]
    return mod.version if mod.version in tied else tied[0]


def _target(s: Session, svc: "Services", mod: models.Module, version: str | None) -> Target:
    pkg = svc.orchestrator.resolve_package(s, mod.package_name, version)  # 404: no such version
    return Target(
        module_id=mod.id,
        module_name=mod.name,
        level=mod.start_order,
        package_id=pkg.id,
        version=pkg.version,
        from_version=_running_version(s, mod, pkg.version),
    )


def _begin(
    s: Session,
    svc: "Services",
    kind: str,
    mod: models.Module,
    target: Target,
    params: RolloutSettings,
    actor: str,
) -> OperationOut:
    system = get_system(s, mod.system_id)
    return svc.rollouts.begin(s, kind, system, [target], params, actor, mod.id).out()


@router.post("/modules/{module_id}/rollout", response_model=OperationStarted, status_code=202)
async def rollout_module(
    module_id: Id,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
    body: RolloutIn | None = None,
) -> OperationStarted:
    """Move every instance of the module to a version, batch after batch, gated on health; the
    module's version changes when it succeeds. Follow it at `GET /operations/{operation_id}`."""
    body = body or RolloutIn()
    mod = get_module(s, module_id)
    target = _target(s, svc, mod, body.version)
    out = _begin(s, svc, "rollout", mod, target, body, principal.name)
    return _started(out, request, f"module={mod.id}")


@router.post("/modules/{module_id}/rollback", response_model=OperationStarted, status_code=202)
async def rollback_module(
    module_id: Id,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
    body: RollbackIn | None = None,
) -> OperationStarted:
    """Back to a kept release (by default the version before the module's last rollout)."""
    body = body or RollbackIn()
    mod = get_module(s, module_id)
    version = body.version or svc.releases.previous_version(s, mod)
    if version is None:
        raise GdosError(
            ErrorCode.INVALID_STATE,
            f"module {mod.name} has no previous version to roll back to: name one",
            {"module_id": mod.id},
        )
    target = _target(s, svc, mod, version)
    params = RolloutSettings(**body.model_dump(exclude={"version"}))
    out = _begin(s, svc, "rollback", mod, target, params, principal.name)
    return _started(out, request, f"module={mod.id}")


@router.post("/systems/{system_id}/rollout", response_model=OperationStarted, status_code=202)
async def rollout_system(
    system_id: Id,
    body: SystemRolloutIn,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
) -> OperationStarted:
    """Several modules as one operation, level by level (ascending start_order)."""
    system = get_system(s, system_id)
    mods = {
        m.name: m
        for m in s.scalars(select(models.Module).where(models.Module.system_id == system.id))
    }
    targets = []
    for name, version in body.versions.items():
        mod = mods.get(name)
        if mod is None:
            raise GdosError(
                ErrorCode.NOT_FOUND, f"system {system.name} has no module {name}", {"module": name}
            )
        targets.append(_target(s, svc, mod, version))
    params = RolloutSettings(**body.model_dump(exclude={"versions"}))
    op = svc.rollouts.begin(s, "rollout", system, targets, params, principal.name, None)
    return _started(op.out(), request, f"system={system.id}")


@router.post("/operations/{operation_id}/resume", response_model=OperationOut)
def resume_operation(
    operation_id: Id, _: Operator, s: SessionDep, svc: ServicesDep
) -> OperationOut:
    """Go on after a canary's pause (409 when it is not paused)."""
    if operation_id not in svc.rollouts.live:
        svc.operations.get(s, operation_id)  # 404 when there is no such operation
    return svc.rollouts.resume(operation_id).out()


@router.post("/operations/{operation_id}/cancel", response_model=OperationOut)
def cancel_operation(
    operation_id: Id, principal: Operator, s: SessionDep, svc: ServicesDep
) -> OperationOut:
    """Stop a running operation. A rollout or rollback then switches what it touched back (the
    operation ends once that is done); a batch start or stop ends where it is."""
    batch = svc.operations.cancel(operation_id, principal.name)
    if batch is not None:
        return batch.out()
    if operation_id in svc.rollouts.live:
        return svc.rollouts.cancel(operation_id, principal.name).out()
    op = svc.operations.get(s, operation_id)  # 404 when there is no such operation
    raise GdosError(
        ErrorCode.INVALID_STATE,
        f"operation {operation_id} has ended ({op.state})",
        {"state": op.state},
    )


@router.get("/modules/{module_id}/releases", response_model=list[ReleaseOut])
def module_releases(module_id: Id, _: Viewer, s: SessionDep, svc: ServicesDep) -> list[ReleaseOut]:
    """Every rollout and rollback of the module, newest first: from, to, who, when, how it
    ended, and what it did to each instance."""
    return svc.releases.history(s, get_module(s, module_id))
