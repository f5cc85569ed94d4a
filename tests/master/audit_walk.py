"""Walk an app's route table and call every state-changing route: each call must leave exactly
one audit row. Used by test_audit_routes.py on the real app and on apps broken on purpose."""

from __future__ import annotations

import re

import fastapi.routing
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from master.db import models
from master.services.audit import UNAUDITED_SOCKETS, WRITE_METHODS
from tests.master.inprocess import services_of

PLACEHOLDER = "walk-nonexistent"


def _flat(routes: list[BaseRoute]) -> list[tuple[BaseRoute, str, set[str] | None]]:
    """(route, full path, methods): routers included into the app are expanded. Newer FastAPI
    keeps included routers as one entry each; `iter_route_contexts` yields their routes."""
    expand = getattr(fastapi.routing, "iter_route_contexts", None)
    if expand is None:
        return [(r, getattr(r, "path", ""), getattr(r, "methods", None)) for r in routes]
    return [(c.original_route, c.path or "", c.methods) for c in expand(routes)]


def routes_of(routes: list[BaseRoute], prefix: str = ""):
    """(write calls as (method, path), websocket paths, routes of a kind the walk cannot judge)."""
    calls: list[tuple[str, str]] = []
    sockets: list[str] = []
    unknown: list[str] = []
    for route, path, methods in _flat(routes):
        if isinstance(route, Mount):
            c, s, u = routes_of(list(route.routes), prefix + path)
            calls += c
            sockets += s
            unknown += u
        elif isinstance(route, WebSocketRoute | APIWebSocketRoute):
            sockets.append(prefix + path)
        elif isinstance(route, Route):
            for method in sorted((methods or set()) & WRITE_METHODS):
                calls.append((method, prefix + path))
        else:
            unknown.append(repr(route))
    return calls, sockets, unknown


def audit_count(app: FastAPI) -> int:
    with services_of(app).db.session() as s:
        return int(s.scalar(select(func.count()).select_from(models.AuditEntry)) or 0)


def walk(app: FastAPI, client: TestClient, headers: dict[str, str]) -> tuple[list[str], int]:
    """Returns (problems, number of write calls made)."""
    calls, sockets, unknown = routes_of(list(app.routes))
    problems = [f"route of unknown kind {u}" for u in unknown]
    problems += [
        f"websocket {path} is not audited and not declared in UNAUDITED_SOCKETS"
        for path in sockets
        if path not in UNAUDITED_SOCKETS
    ]
    for method, path in calls:
        url = re.sub(r"\{[^}]+\}", PLACEHOLDER, path)
        before = audit_count(app)
        r = client.request(method, url, json={}, headers=headers)
        written = audit_count(app) - before
        if written != 1:
            problems.append(f"{method} {path} wrote {written} audit rows (status {r.status_code})")
    return problems, len(calls)
