"""An instance's logs: which there are, and their tails (read by the node's agent)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from master.api.deps import ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.api.instances import get_instance
from master.services.logs import MAX_TAIL
from protocol.rest_records import LogFileOut

router = APIRouter(prefix="/api/v1/instances", tags=["logs"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]


@router.get("/{instance_id}/logs", response_model=list[LogFileOut])
async def list_logs(
    instance_id: Id, _: Viewer, s: SessionDep, svc: ServicesDep
) -> list[LogFileOut]:
    """stdout, stderr, then the manifest's log_paths, with their sizes on the node."""
    inst = get_instance(s, instance_id)
    return await svc.logs.list_logs(inst)


@router.get(
    "/{instance_id}/logs/{name}",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "the end of the log"}},
)
async def tail_log(
    instance_id: Id,
    name: Annotated[str, Path(min_length=1, max_length=256)],
    _: Viewer,
    s: SessionDep,
    svc: ServicesDep,
    tail_bytes: Annotated[int, Query(ge=0, le=MAX_TAIL)] = 65536,
) -> Response:
    """The last `tail_bytes` bytes of one declared log. `X-Log-Size` is the file's size and
    `X-Log-Offset` where the returned bytes start. Follow it live by subscribing to
    `log:<instance_id>:<name>` on the event stream."""
    inst = get_instance(s, instance_id)
    data, size, offset = await svc.logs.tail(s, inst, name, tail_bytes)
    return Response(
        data,
        media_type="text/plain; charset=utf-8",
        headers={"X-Log-Size": str(size), "X-Log-Offset": str(offset)},
    )
