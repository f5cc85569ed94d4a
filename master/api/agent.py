"""Agent enrolment and the agent WebSocket (one per node, dialled out by the agent)."""

import asyncio
import contextlib
import logging

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from master.api import wsutil
from master.api.agent_inbox import Inbox, Unreadable
from master.api.deps import ServicesDep, SessionDep, bearer_token
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.services import accounts, audit
from master.services.agents import AgentLink
from master.services.security import new_secret, secret_hash
from master.services.throttle import LogBudget
from master.start_marks import mark, mark_latest
from master.ws_direct import direct_text
from protocol.errors import GdosError
from protocol.messages import (
    AGENT_MESSAGE,
    CLOSE_AUTH_FAILED,
    CLOSE_POLICY,
    CLOSE_REPLACED,
    Config,
    DecodeError,
    Hello,
)
from protocol.rest import EnrollIn, EnrollOut, iso

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/agent", tags=["agent"], responses=ERROR_RESPONSES)

HELLO_TIMEOUT = 10.0
_noisy = LogBudget()  # lines a misbehaving node can cause in the master's log


@router.post("/enroll", response_model=EnrollOut, status_code=201)
def enroll(body: EnrollIn, request: Request, s: SessionDep, svc: ServicesDep) -> EnrollOut:
    request.state.actor = f"agent@{body.host.hostname}"[:64]
    request.state.audit_detail = {"hostname": body.host.hostname}
    try:
        token = accounts.claim_join_token(s, body.join_token)
    except GdosError as exc:
        request.state.audit_detail.update(exc.details)  # which token was used up, if one was
        raise
    secret = new_secret("gdn")
    host = body.host
    node = models.Node(secret_hash=secret_hash(secret), labels={}, **accounts.host_columns(host))
    s.add(node)
    s.commit()
    svc.nodes.changed()  # listed at once, offline until its agent says hello
    request.state.audit_target = f"node={node.id}"
    request.state.audit_detail = {
        "hostname": host.hostname,
        "join_token_id": token.id,
        # The default token sits in a file on the master and never expires: say when it is used.
        "join_token": "default" if token.is_default else "issued",
        "uses": token.uses,
        "max_uses": token.max_uses,
    }
    log.info(
        "node %s (%s) enrolled with the %s join token",
        node.id,
        host.hostname,
        "default" if token.is_default else f"issued {token.id}",
    )
    return EnrollOut(node_id=node.id, node_secret=secret)


@router.websocket("/ws")
async def agent_socket(ws: WebSocket, svc: ServicesDep) -> None:
    if wsutil.cross_origin(ws):
        await ws.close(CLOSE_POLICY, "cross-origin WebSocket refused")
        return
    token = bearer_token(ws)
    node_id = await svc.credentials.node_id(token) if token else None
    if node_id is None:
        await ws.close(CLOSE_AUTH_FAILED, "invalid node credential")
        return
    await ws.accept()
    mark("first_agent_socket")
    log.debug("node %s: socket accepted", node_id)  # stage marks of a take-over (bench.cluster)
    hello = await _first_hello(ws, node_id)
    if hello is None:
        return
    log.debug("node %s: hello received", node_id)
    link = AgentLink(node_id, ws)
    link.peer = ws.client.host if ws.client else ""
    link.greeting = True  # until its hello is applied (master/services/hellos.py)
    old = svc.agents.attach(link)
    try:
        if old is not None:
            await _replace(old, link, svc)
            del old
        await _greet(ws, link, hello, svc)
        del hello  # its instance reports are not kept for the connection's life
        await _serve(ws, link, svc)
    except WebSocketDisconnect:
        pass  # gone (or replaced) while it was being greeted
    except RuntimeError:
        if ws.application_state != WebSocketState.DISCONNECTED:
            raise
    finally:
        svc.orchestrator.reports.flush()  # its answers still queued reach their waiters
        if svc.agents.detach(link):
            planned = link.leaving or svc.stopping
            svc.nodes.offline(link, planned)
            log.info("node %s disconnected%s", node_id, " (planned)" if planned else "")


async def _first_hello(ws: WebSocket, node_id: str) -> Hello | None:
    """The agent's first message, which must be its hello; None once the socket is closed
    for lack of one."""
    try:
        hello = AGENT_MESSAGE.decode(await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT))
    except (TimeoutError, DecodeError, WebSocketDisconnect, KeyError) as exc:
        log.info("node %s: no valid hello (%s)", node_id, type(exc).__name__)
        await _close(ws, CLOSE_POLICY, "expected hello")
        return None
    if not isinstance(hello, Hello):
        await _close(ws, CLOSE_POLICY, "expected hello")
        return None
    return hello


async def _replace(old: AgentLink, link: AgentLink, svc: ServicesDep) -> None:
    """Two connections with one node credential: an agent reconnecting before its old socket
    timed out, or a copied credential. The older one goes, and the audit says so."""
    svc.agents.detach(old)
    await _close(old.channel, CLOSE_REPLACED, "replaced by a newer connection")  # type: ignore[arg-type]
    if _noisy.allow(f"replaced:{link.node_id}") is not None:
        log.warning(
            "node %s: connection from %s replaced the one from %s",
            link.node_id,
            link.peer,
            old.peer,
        )
    audit.record(
        svc.db,
        actor=f"node:{link.node_id}",
        action="agent_connection_replaced",
        target=f"node={link.node_id}",
        result="replaced",
        source_ip=link.peer,
        detail={"previous_ip": old.peer, "connected_at": iso(old.connected_at)},
    )


async def _greet(ws: WebSocket, link: AgentLink, hello: Hello, svc: ServicesDep) -> None:
    """Reconcile from the hello, then send the agent its configuration."""
    node_id = link.node_id
    unmanaged = await svc.orchestrator.on_hello(link, hello)
    log.debug("node %s: hello applied", node_id)
    link.unmanaged = unmanaged
    if unmanaged:
        log.warning("node %s runs instances the master does not know: %s", node_id, unmanaged)
        audit.record(
            svc.db,
            actor=f"node:{node_id}",
            action="unmanaged_instances",
            target=f"node={node_id}",
            result="reported",
            source_ip=ws.client.host if ws.client else "",
            detail={"instances": unmanaged, "note": "kept running on the node, not managed"},
            hub=svc.hub,
        )
    svc.logs.node_connected(node_id)
    await link.send(
        Config(
            node_id=node_id,
            heartbeat_interval=svc.settings.heartbeat_interval,
            metrics_interval=svc.settings.metrics_interval,
        )
    )
    svc.nodes.publish(node_id)
    mark_latest("greeted")
    log.info("node %s connected (%s)", node_id, hello.host.hostname)


async def _serve(ws: WebSocket, link: AgentLink, svc: ServicesDep) -> None:
    inbox = Inbox(link, svc)
    attach = direct_text(ws.scope.get("extensions"))
    if attach is not None:  # most frames are handled where they are parsed; the rest come here
        attach(inbox.take)
    while True:
        try:
            text = await wsutil.receive_text(ws)
        except (WebSocketDisconnect, RuntimeError):
            return
        if text is None:
            return
        try:
            hello = inbox.receive(text)
        except Unreadable as exc:
            await _close(ws, exc.code, exc.reason)
            return
        if hello is not None:
            await svc.orchestrator.on_hello(link, hello)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # already closed or gone
        await ws.close(code, reason)
