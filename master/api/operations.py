"""Batch start/stop of a system, and the `operation` resource that shows its progress."""

from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.api.systems import get_system
from master.db import models
from master.services.operation_steps import operation_out
from protocol.rest import BatchIn, OperationOut, OperationStarted

router = APIRouter(prefix="/api/v1", tags=["operations"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]
_encode = msgspec.json.Encoder().encode


async def _begin(
    kind: str,
    system_id: str,
    body: BatchIn | None,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
) -> Response:
    system = get_system(s, system_id)
    svc.rollouts.refuse_if_busy(system.id, only_releases=True)  # never superseded silently
    ready_timeout = body.ready_timeout if body else None
    op = svc.operations.begin(s, system, kind, principal.name, ready_timeout)
    request.state.audit_target = f"system={system.id}"
    request.state.audit_detail = {"operation": op.id, "instances": len(op.steps)}
    # OperationStarted built without models: the steps of a fleet-wide system number thousands.
    answer = _encode({**op.view(), "operation_id": op.id})
    return Response(answer, status_code=202, media_type="application/json")


@router.post("/systems/{system_id}/start", response_model=OperationStarted, status_code=202)
async def start_system(
    system_id: Id,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
    body: BatchIn | None = None,
) -> Response:
    """Start every instance, level by level (ascending `start_order`); a level begins when the
    one below runs and is healthy. Follow it at `GET /operations/{operation_id}`."""
    return await _begin("start", system_id, body, principal, request, s, svc)


@router.post("/systems/{system_id}/stop", response_model=OperationStarted, status_code=202)
async def stop_system(
    system_id: Id,
    principal: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
    body: BatchIn | None = None,
) -> Response:
    """Stop every instance, level by level, in reverse `start_order`."""
    return await _begin("stop", system_id, body, principal, request, s, svc)


@router.get("/operations/{operation_id}", response_model=OperationOut)
def read_operation(operation_id: Id, _: Viewer, s: SessionDep, svc: ServicesDep) -> OperationOut:
    rollout = svc.rollouts.live.get(operation_id)
    return rollout.out() if rollout is not None else svc.operations.get(s, operation_id)


@router.get("/operations", response_model=list[OperationOut])
def list_operations(
    _: Viewer,
    s: SessionDep,
    svc: ServicesDep,
    system_id: Annotated[str | None, Query(max_length=64)] = None,
    state: Literal["running", "succeeded", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[OperationOut]:
    """Newest first."""
    q = select(models.Operation).order_by(models.Operation.created_at.desc()).limit(limit)
    if system_id:
        q = q.where(models.Operation.system_id == system_id)
    if state:
        q = q.where(models.Operation.state == state)
    out = []
    for row in s.scalars(q):
        live = svc.operations.live.get(row.id) or svc.rollouts.live.get(row.id)
        out.append(live.out() if live is not None else operation_out(row))
    return out
