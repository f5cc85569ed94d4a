"""ASGI middleware around every route: the audit row of each write, and the restore gate."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from master.db.session import Database
from master.hub import Hub
from master.services.audit import API_PREFIX, WRITE_METHODS, record, result_word
from master.services.restore import Gate
from protocol.errors import ErrorCode, GdosError

log = logging.getLogger(__name__)

HOLD_TIMEOUT = 60.0  # how long a request waits at the closed gate before a 503


class AuditMiddleware:
    """Writes the audit row of every POST/PUT/PATCH/DELETE under /api/v1 once its status is
    known, so no route can forget it; routes enrich it through `request.state`. The row is
    written before the answer goes out: whoever reads the audit log after an answer finds it."""

    def __init__(self, app: ASGIApp, db: Database, hub: Hub | None = None) -> None:
        self.app = app
        self.db = db
        self.hub = hub  # new rows also go to the console event stream (topic `audit`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or not (scope["path"] + "/").startswith(API_PREFIX + "/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500
        written = False

        async def capture(message: Message) -> None:
            nonlocal status, written
            if message["type"] == "http.response.start":
                status = message["status"]
                written = True
                self._write(scope, status)
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if not written:  # no answer started: the request failed before one
                self._write(scope, status)

    def _write(self, scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        route = scope.get("route")
        action = getattr(route, "name", None) or f"{scope['method']} {scope['path']}"
        params = scope.get("path_params") or {}
        target = state.get("audit_target") or ",".join(f"{k}={v}" for k, v in params.items())
        client = scope.get("client")
        try:
            record(
                self.db,
                actor=state.get("actor") or "anonymous",
                action=action,
                target=str(target),
                result=result_word(status),
                source_ip=client[0] if client else "",
                detail=state.get("audit_detail") or {},
                hub=self.hub,
            )
        except Exception:  # the audit must never turn a served request into a crash
            log.exception("could not write the audit row for %s %s", scope["method"], scope["path"])


class GateMiddleware:
    """Holds new requests while a restore swaps the database; counts HTTP requests in flight."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not await self.gate.wait_open(HOLD_TIMEOUT):
            await _refuse(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        self.gate.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.inflight -= 1


AGENT_SOCKET_PATH = "/api/v1/agent/ws"


class AgentSocketShortcut:
    """Outermost: an agent's WebSocket goes straight to its handler, past the routing and the
    middleware below (which pass WebSockets through untouched), with the restore gate's hold.

    A WebSocket's ASGI call lasts as long as the connection, and every layer it passes keeps a
    coroutine and its closures for that long: about 20 layers, kilobytes per agent, megabytes
    for a fleet. The route stays registered (and documented) for what reads the route table.
    """

    def __init__(self, app: ASGIApp, gate: Gate, handler: Callable[[WebSocket], Awaitable[None]]):
        self.app = app
        self.gate = gate
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or scope["path"] != AGENT_SOCKET_PATH:
            await self.app(scope, receive, send)
        elif not await self.gate.wait_open(HOLD_TIMEOUT):
            await _refuse(scope, receive, send)
        else:
            await self.handler(WebSocket(scope, receive, send))


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    message = "the master is restoring a backup; retry in a moment"
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": message})
        return
    body = GdosError(ErrorCode.UNAVAILABLE, message).to_wire()
    await JSONResponse({"error": body}, status_code=503)(scope, receive, send)
