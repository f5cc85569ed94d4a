"""Nodes: enrolled hosts, their facts and liveness."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import select

from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.db.session import get_or_404, lock_row
from master.services.serializers import node_out
from protocol.errors import ErrorCode, GdosError
from protocol.messages import CLOSE_AUTH_FAILED
from protocol.rest import NodeOut, NodePatch

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"], responses=ERROR_RESPONSES)
NodeId = Annotated[str, Path(max_length=64)]


def get_node(s: SessionDep, node_id: str) -> models.Node:
    """A node that was removed (its credential revoked) is gone for the API, as in the list."""
    node = get_or_404(s, models.Node, node_id, "node")
    if node.revoked:
        raise GdosError(ErrorCode.NOT_FOUND, f"no node {node_id} (it was removed)")
    return node


@router.get("", response_model=list[NodeOut])
async def list_nodes(_: Viewer, request: Request, svc: ServicesDep) -> Response:
    # Built without a model per node and shared by pollers: consoles poll this on large fleets.
    # A current listing is answered on the loop; a build (a query) goes to a worker thread,
    # ahead of the listing's expiry while pollers keep asking. asyncio's executor rather than
    # starlette's run_in_threadpool: its answer is back two loop turns later instead of four.
    listing = svc.nodes.current()
    if listing is None:
        listing = await asyncio.get_running_loop().run_in_executor(None, svc.nodes.listing)
    else:
        svc.nodes.refresh_ahead()
    headers = {"ETag": listing.etag, "Cache-Control": "no-cache"}
    if listing.etag in _tags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(listing.body, media_type="application/json", headers=headers)


def _tags(header: str) -> list[str]:
    """The entity tags of an If-None-Match header (weak ones compared as strong)."""
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


@router.get("/{node_id}", response_model=NodeOut)
def read_node(node_id: NodeId, _: Viewer, s: SessionDep, svc: ServicesDep) -> NodeOut:
    return node_out(get_node(s, node_id), svc.agents)


@router.patch("/{node_id}", response_model=NodeOut)
async def update_node(
    node_id: NodeId, body: NodePatch, _: Operator, s: SessionDep, svc: ServicesDep
) -> NodeOut:
    node = get_node(s, node_id)
    node.labels = dict(body.labels)
    s.commit()
    svc.nodes.publish(node_id)
    return node_out(node, svc.agents)


@router.delete("/{node_id}", status_code=204, response_class=Response)
async def delete_node(
    node_id: NodeId, _: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> Response:
    """Remove a node and revoke its credential (409 while it has instances)."""
    node = get_node(s, node_id)
    lock_row(s, node)  # a deploy to it on another master finishes first, or finds it removed
    has = s.scalars(select(models.Instance.id).where(models.Instance.node_id == node_id)).first()
    if has is not None:
        raise GdosError(
            ErrorCode.IN_USE, f"node {node.hostname} still has instances; destroy them first"
        )
    node.revoked = True
    node.labels = {}
    s.commit()
    svc.principals.forget_all()  # its credential no longer authenticates, not even a moment
    link = svc.agents.get(node_id)
    if link is not None:
        svc.agents.detach(link)
        await link.channel.close(CLOSE_AUTH_FAILED, "node removed")
    request.state.audit_detail = {"hostname": node.hostname}
    svc.nodes.changed()
    svc.hub.publish("node", {"id": node_id, "deleted": True})
    return Response(status_code=204)
