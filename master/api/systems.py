"""Systems and their modules."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.db.session import get_or_404, lock_by_id, lock_row
from master.services import instance_settings
from master.services.serializers import instance_out, module_out, system_out
from protocol.errors import ErrorCode, GdosError
from protocol.launch import LaunchError, check_total
from protocol.rest import (
    ModuleIn,
    ModuleOut,
    ModulePatch,
    SystemDetail,
    SystemIn,
    SystemOut,
    SystemPatch,
)
from protocol.rest_releases import ModuleChanged

router = APIRouter(prefix="/api/v1", tags=["systems"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]


def get_system(s: SessionDep, system_id: str) -> models.System:
    return get_or_404(s, models.System, system_id, "system")


def get_module(s: SessionDep, module_id: str) -> models.Module:
    return get_or_404(s, models.Module, module_id, "module")


def system_detail(s: SessionDep, system: models.System) -> SystemDetail:
    mods = s.scalars(
        select(models.Module)
        .where(models.Module.system_id == system.id)
        .order_by(models.Module.start_order, models.Module.name)
    )
    insts = s.scalars(
        select(models.Instance)
        .where(models.Instance.system_id == system.id)
        .order_by(models.Instance.name)
    )
    return SystemDetail(
        **system_out(system).model_dump(),
        modules=[module_out(m) for m in mods],
        instances=[instance_out(i) for i in insts],
    )


@router.post("/systems", response_model=SystemOut, status_code=201)
async def create_system(
    body: SystemIn, _: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> SystemOut:
    system = models.System(name=body.name, description=body.description)
    s.add(system)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        raise GdosError(ErrorCode.ALREADY_EXISTS, f"a system named {body.name} exists") from None
    request.state.audit_target = f"system={system.id}"
    out = system_out(system)
    svc.hub.publish("system", out.model_dump())
    return out


@router.get("/systems", response_model=list[SystemOut])
def list_systems(_: Viewer, s: SessionDep) -> list[SystemOut]:
    return [system_out(x) for x in s.scalars(select(models.System).order_by(models.System.name))]


@router.get("/systems/{system_id}", response_model=SystemDetail)
def read_system(system_id: Id, _: Viewer, s: SessionDep) -> SystemDetail:
    return system_detail(s, get_system(s, system_id))


@router.patch("/systems/{system_id}", response_model=SystemOut)
async def update_system(
    system_id: Id, body: SystemPatch, _: Operator, s: SessionDep, svc: ServicesDep
) -> SystemOut:
    system = get_system(s, system_id)
    system.description = body.description
    s.commit()
    out = system_out(system)
    svc.hub.publish("system", out.model_dump())
    return out


@router.delete("/systems/{system_id}", status_code=204, response_class=Response)
async def delete_system(system_id: Id, _: Operator, s: SessionDep, svc: ServicesDep) -> Response:
    system = get_system(s, system_id)
    lock_row(s, system)  # a deploy on another master waits, then finds no system
    if s.scalars(select(models.Instance.id).where(models.Instance.system_id == system_id)).first():
        raise GdosError(
            ErrorCode.IN_USE, f"system {system.name} still has instances; destroy them first"
        )
    s.query(models.Module).filter(models.Module.system_id == system_id).delete()
    s.delete(system)
    s.commit()
    svc.hub.publish("system", {"id": system_id, "deleted": True})
    return Response(status_code=204)


@router.post("/systems/{system_id}/modules", response_model=ModuleOut, status_code=201)
async def create_module(
    system_id: Id, body: ModuleIn, _: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> ModuleOut:
    get_system(s, system_id)
    svc.orchestrator.resolve_package(s, body.package, body.version)  # 404 early, not at deploy
    mod = models.Module(
        system_id=system_id,
        name=body.name,
        package_name=body.package,
        version=body.version,
        start_order=body.start_order,
        env=body.env,
        args=body.args,
    )
    s.add(mod)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        raise GdosError(
            ErrorCode.ALREADY_EXISTS, f"the system already has a module {body.name}"
        ) from None
    request.state.audit_target = f"module={mod.id}"
    out = module_out(mod)
    svc.hub.publish("module", out.model_dump())
    return out


@router.get("/modules/{module_id}", response_model=ModuleOut)
def read_module(module_id: Id, _: Viewer, s: SessionDep) -> ModuleOut:
    return module_out(get_module(s, module_id))


@router.patch("/modules/{module_id}", response_model=ModuleChanged)
async def update_module(
    module_id: Id, body: ModulePatch, _: Operator, s: SessionDep, svc: ServicesDep
) -> ModuleChanged:
    """Change a module. What runs does not change by itself: `drifted` lists the instances that
    now differ (a new version: until upgraded or rolled out; env or args: until restarted)."""
    mod = get_module(s, module_id)
    given = body.model_dump(exclude_unset=True)
    if "version" in given:
        svc.orchestrator.resolve_package(s, mod.package_name, given["version"])
    try:  # the body alone was checked; what is kept must fit with it
        check_total(given.get("env", mod.env), given.get("args", mod.args))
    except LaunchError as exc:
        where = exc.where or "env"
        raise GdosError(ErrorCode.VALIDATION_FAILED, f"{where}: {exc}", {"field": where}) from None
    for key, value in given.items():
        setattr(mod, key, value)
    s.flush()
    insts = instance_settings.of_modules(s, [mod.id])
    instance_settings.refresh_drift(s, insts)
    s.commit()
    for inst in insts:
        svc.orchestrator.feed.publish(inst)
    out = module_out(mod)
    svc.hub.publish("module", out.model_dump())
    drifted = sorted(inst.id for inst in insts if inst.drift)
    return ModuleChanged(**out.model_dump(), drifted=drifted)


@router.delete("/modules/{module_id}", status_code=204, response_class=Response)
async def delete_module(module_id: Id, _: Operator, s: SessionDep, svc: ServicesDep) -> Response:
    mod = get_module(s, module_id)
    lock_by_id(s, models.System, mod.system_id)  # deploys of the system wait (several masters)
    if s.scalars(select(models.Instance.id).where(models.Instance.module_id == module_id)).first():
        raise GdosError(
            ErrorCode.IN_USE, f"module {mod.name} still has instances; destroy them first"
        )
    system_id = mod.system_id
    s.delete(mod)
    s.commit()
    svc.hub.publish("module", {"id": module_id, "system_id": system_id, "deleted": True})
    return Response(status_code=204)
