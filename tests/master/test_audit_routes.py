"""Every state-changing route writes an audit row: the whole route table is walked and called.

The walk also runs on apps broken on purpose, to show it catches a write route outside
/api/v1, a middleware that answers before the audit sees the call, and an undeclared socket.
"""

from pathlib import Path

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.master.audit_walk import routes_of, walk
from tests.master.inprocess import make_app, running


def test_every_write_route_writes_an_audit_row_and_the_chain_holds(tmp_path):
    app = make_app(tmp_path / "m")
    calls, sockets, _ = routes_of(list(app.routes))
    assert len(calls) >= 20, calls  # the walk sees the whole table, not a slice of it
    assert "/api/v1/events" in sockets and "/api/v1/agent/ws" in sockets
    with running(app) as (client, headers):
        problems, made = walk(app, client, headers)
        assert problems == []
        assert made == len(calls)
        verdict = client.get("/api/v1/audit/verify", headers=headers).json()
        assert verdict["ok"] is True and verdict["count"] > made, verdict


def test_the_walk_catches_a_write_route_outside_the_api_prefix(tmp_path: Path) -> None:
    app = make_app(tmp_path / "m")

    @app.post("/admin/reset")
    def reset() -> dict:
        return {"reset": True}

    with running(app) as (client, headers):
        problems, _ = walk(app, client, headers)
    assert problems == ["POST /admin/reset wrote 0 audit rows (status 200)"]


class AnswersFirst:
    """A middleware added later, outside the audit, that answers some writes itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) == (
            "POST",
            "/api/v1/systems",
        ):
            await JSONResponse({"cached": True})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def test_the_walk_catches_a_call_that_bypasses_the_audit_middleware(tmp_path):
    app = make_app(tmp_path / "m")
    app.add_middleware(AnswersFirst)
    with running(app) as (client, headers):
        problems, _ = walk(app, client, headers)
    assert problems == ["POST /api/v1/systems wrote 0 audit rows (status 200)"]


def test_the_walk_catches_an_undeclared_websocket(tmp_path: Path) -> None:
    app = make_app(tmp_path / "m")

    @app.websocket("/api/v1/remote-shell")
    async def shell(ws: WebSocket) -> None:
        await ws.close()

    with running(app) as (client, headers):
        problems, _ = walk(app, client, headers)
    assert problems == [
        "websocket /api/v1/remote-shell is not audited and not declared in UNAUDITED_SOCKETS"
    ]
