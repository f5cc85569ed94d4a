"""The app's route table, flattened (FastAPI nests included routers), for 405 answers and tests."""

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path


@dataclass(frozen=True)
class RouteInfo:
    kind: Literal["http", "websocket"]
    methods: frozenset[str]
    path: str
    name: str
    regex: re.Pattern[str]


def walk(app: FastAPI) -> list[RouteInfo]:
    out = []
    for ctx in iter_route_contexts(app.routes):
        if ctx.path is None:
            continue
        methods = frozenset(ctx.methods or ())
        kind: Literal["http", "websocket"] = "http" if methods else "websocket"
        regex, _, _ = compile_path(ctx.path)
        out.append(RouteInfo(kind, methods, ctx.path, ctx.name or "", regex))
    return out


@cache
def _table(app: FastAPI) -> tuple[RouteInfo, ...]:
    return tuple(walk(app))


def methods_at(app: FastAPI, path: str) -> set[str]:
    """Every HTTP method some route serves at this concrete path."""
    matching = [r for r in _table(app) if r.kind == "http" and r.regex.match(path)]
    # A literal path (/instances/adopt) outranks a template that also matches it
    # (/instances/{instance_id}), as it does when the request is routed.
    literal = [r for r in matching if r.path == path]
    found: set[str] = set()
    for route in literal or matching:
        found |= route.methods
    return found
