"""Instances: deploy a module to a node, then start, stop, restart, destroy."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select

from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.db.session import get_or_404
from master.services import adoption
from master.services.serializers import instance_out
from protocol.errors import ErrorCode, GdosError
from protocol.rest import AdoptIn, InstanceCreate, InstanceOut
from protocol.states import InstanceState

router = APIRouter(prefix="/api/v1/instances", tags=["instances"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]


def get_instance(s: SessionDep, instance_id: str) -> models.Instance:
    return get_or_404(s, models.Instance, instance_id, "instance")


@router.post("", response_model=InstanceOut, status_code=202)
async def create_instance(
    body: InstanceCreate, _: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> InstanceOut:
    """Deploy a module to a node: the agent downloads, checks sha256 and unpacks."""
    mod = s.get(models.Module, body.module_id)
    if mod is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"no module {body.module_id}")
    node = s.get(models.Node, body.node_id)
    if node is None or node.revoked:
        raise GdosError(ErrorCode.NOT_FOUND, f"no node {body.node_id}")
    inst = await svc.orchestrator.deploy(s, mod, node)
    request.state.audit_target = f"instance={inst.id}"
    request.state.audit_detail = {"module": mod.name, "node": node.id, "version": inst.version}
    return instance_out(inst)


@router.post("/adopt", response_model=InstanceOut, status_code=201)
async def adopt_instance(
    body: AdoptIn, _: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> InstanceOut:
    """Take over a running process GDOS did not start (by PID file, name or command line).
    Several matching processes are refused with the candidates listed in `details`."""
    inst = await adoption.adopt(svc.orchestrator, s, body)
    request.state.audit_target = f"instance={inst.id}"
    request.state.audit_detail = {"strategy": body.strategy, "node": body.node_id, "pid": inst.pid}
    return instance_out(inst)


@router.get("", response_model=list[InstanceOut])
def list_instances(
    _: Viewer,
    s: SessionDep,
    svc: ServicesDep,
    system_id: Annotated[str | None, Query(max_length=64)] = None,
    node_id: Annotated[str | None, Query(max_length=64)] = None,
    state: InstanceState | None = None,
    name: Annotated[str | None, Query(max_length=160, description="only this name")] = None,
) -> list[InstanceOut]:
    q = select(models.Instance).order_by(models.Instance.name)
    if name is not None:
        q = q.where(models.Instance.name == name)
    if system_id:
        q = q.where(models.Instance.system_id == system_id)
    if node_id:
        q = q.where(models.Instance.node_id == node_id)
    if state:
        q = q.where(models.Instance.state == state)
    return [_with_figures(instance_out(i), svc) for i in s.scalars(q)]


def _with_figures(out: InstanceOut, svc: ServicesDep) -> InstanceOut:
    figures = svc.metrics.instance_now(out.id)
    return out.model_copy(update=figures) if figures else out


@router.get("/{instance_id}", response_model=InstanceOut)
def read_instance(instance_id: Id, _: Viewer, s: SessionDep, svc: ServicesDep) -> InstanceOut:
    return _with_figures(instance_out(get_instance(s, instance_id)), svc)


@router.post("/{instance_id}/start", response_model=InstanceOut, status_code=202)
async def start_instance(
    instance_id: Id, _: Operator, s: SessionDep, svc: ServicesDep
) -> InstanceOut:
    """Start; a no-op when it is already starting or running."""
    return instance_out(await svc.orchestrator.start(s, get_instance(s, instance_id)))


@router.post("/{instance_id}/stop", response_model=InstanceOut, status_code=202)
async def stop_instance(
    instance_id: Id, _: Operator, s: SessionDep, svc: ServicesDep
) -> InstanceOut:
    return instance_out(await svc.orchestrator.stop(s, get_instance(s, instance_id)))


@router.post("/{instance_id}/restart", response_model=InstanceOut, status_code=202)
async def restart_instance(
    instance_id: Id, _: Operator, s: SessionDep, svc: ServicesDep
) -> InstanceOut:
    return instance_out(await svc.orchestrator.restart(s, get_instance(s, instance_id)))


@router.delete("/{instance_id}", response_model=InstanceOut, status_code=202)
async def destroy_instance(
    instance_id: Id,
    _: Operator,
    s: SessionDep,
    svc: ServicesDep,
    force: Annotated[bool, Query(description="forget it without the node (node offline)")] = False,
) -> InstanceOut:
    """Stop it and remove its files from the node; the instance disappears when that is done."""
    inst = get_instance(s, instance_id)
    out = instance_out(inst)
    await svc.orchestrator.destroy(s, inst, force=force)
    return out.model_copy(update={"state": "destroyed" if force else inst.state})
