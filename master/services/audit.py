"""The audit trail: one row for every state-changing call and every login, failed ones too.

`AuditMiddleware` writes the row for every POST/PUT/PATCH/DELETE under /api/v1 after the
response status is known, so no route can forget it. Routes enrich it through
`request.state` (`audit_target`, `audit_detail`, `actor`).
"""

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from master.db import models
from master.db.session import Database

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def record(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str = "",
    result: str = "ok",
    source_ip: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    with db.session() as s:
        s.add(
            models.AuditEntry(
                ts=time.time(),
                actor=actor[:64],
                action=action[:64],
                target=target[:255],
                result=result[:32],
                source_ip=source_ip[:64],
                detail=detail or {},
            )
        )
        s.commit()


def result_word(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return f"error_{status}"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or not scope["path"].startswith("/api/v1/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
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
            )
        except Exception:  # the audit must never turn a served request into a crash
            log.exception("could not write the audit row for %s %s", scope["method"], scope["path"])
