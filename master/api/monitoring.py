"""Metrics of nodes and instances: recent samples as JSON, and the Prometheus page."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from master.api.deps import (
    ServicesDep,
    SessionDep,
    authenticated,
    bearer_token,
    check_role,
    resolve_principal,
)
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.services import prometheus
from master.services.metrics import instance_key, node_key
from master.services.peer_secret import PEER_HEADER, SECRET_HEADER
from protocol.errors import ErrorCode, GdosError
from protocol.messages import INSTANCE_FIELDS, NODE_FIELDS
from protocol.monitoring import InstanceMetricsOut, InstanceSample, NodeMetricsOut, NodeSample

router = APIRouter(tags=["monitoring"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]
Seconds = Annotated[
    float,
    Query(
        gt=0,
        le=7 * 86400,
        description="how far back; per-second samples for the recent window, "
        "per-minute averages before it",
    ),
]


def viewer_or_peer(request: Request, s: SessionDep, svc: ServicesDep) -> bool:
    """True for a peer master presenting the cluster's secret (it asks for a node held here;
    never asked further); otherwise the caller must be a viewer, and False."""
    peer = request.headers.get(PEER_HEADER)
    if peer is None:
        check_role(authenticated(request, s), "viewer")
        return False
    if not svc.peer_secret.check(request.headers.get(SECRET_HEADER)):
        raise GdosError(
            ErrorCode.UNAUTHENTICATED,
            "wrong or missing master-to-master secret (X-Gdos-Peer-Secret)",
        )
    request.state.actor = f"master:{peer}"[:64]
    return True


FromPeer = Annotated[bool, Depends(viewer_or_peer)]


def _require(
    svc: ServicesDep, model: type[models.Node] | type[models.Instance], ident: str
) -> None:
    with svc.db.session() as s:
        row = s.get(model, ident)
    if row is None or (isinstance(row, models.Node) and row.revoked):
        kind = "node" if model is models.Node else "instance"
        raise GdosError(ErrorCode.NOT_FOUND, f"no {kind} {ident}")


@router.get("/api/v1/nodes/{node_id}/metrics", response_model=NodeMetricsOut)
async def node_metrics(
    node_id: Id, from_peer: FromPeer, svc: ServicesDep, seconds: Seconds = 300
) -> NodeMetricsOut:
    """The samples live in the memory of the master holding the node: asked of it when that
    is another master."""
    if node_id not in svc.directory.hostnames:
        _require(svc, models.Node, node_id)
    samples = svc.metrics.query(node_key(node_id), NODE_FIELDS, seconds)
    if not samples and not from_peer and svc.forwarder is not None:
        path = f"/api/v1/nodes/{node_id}/metrics"
        if (found := await svc.forwarder.history(node_id, path, seconds)) is not None:
            return NodeMetricsOut.model_validate(found)
    return NodeMetricsOut(id=node_id, seconds=seconds, samples=[NodeSample(**x) for x in samples])


@router.get("/api/v1/instances/{instance_id}/metrics", response_model=InstanceMetricsOut)
async def instance_metrics(
    instance_id: Id, from_peer: FromPeer, svc: ServicesDep, seconds: Seconds = 300
) -> InstanceMetricsOut:
    """As a node's: asked of the master holding the instance's node when that is another."""
    if instance_id not in svc.directory.instances:
        _require(svc, models.Instance, instance_id)
    samples = svc.metrics.query(instance_key(instance_id), INSTANCE_FIELDS, seconds)
    if not samples and not from_peer and svc.forwarder is not None:
        path = f"/api/v1/instances/{instance_id}/metrics"
        if (found := await svc.forwarder.history(instance_id, path, seconds)) is not None:
            return InstanceMetricsOut.model_validate(found)
    return InstanceMetricsOut(
        id=instance_id, seconds=seconds, samples=[InstanceSample(**x) for x in samples]
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics(request: Request, svc: ServicesDep) -> Response:
    """Nodes, instances and the master's own health for Prometheus. Needs a user token of any
    role (Prometheus: `authorization` with `credentials`), unless the master runs with
    `--metrics-public`."""
    if not svc.settings.metrics_public:
        with svc.db.session() as s:
            principal = resolve_principal(s, bearer_token(request))
        if principal is None or principal.is_node:
            raise GdosError(
                ErrorCode.UNAUTHENTICATED,
                "send 'Authorization: Bearer <token>' of any user, or start the master with "
                "--metrics-public",
            )
    # Rendering a large fleet takes a while: off the event loop, on snapshots.
    text = await run_in_threadpool(prometheus.render, svc)
    return Response(text, media_type=prometheus.CONTENT_TYPE)
