"""Every HTTP route refuses query parameters it does not declare (`?nmae=x` is a 422 naming the
parameter, not a listing that quietly ignores it), through one app-wide dependency."""

import difflib

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from protocol.errors import ErrorCode, GdosError

_declared: dict[int, frozenset[str]] = {}  # by id(route): routes live as long as their app


def declared(route: APIRoute) -> frozenset[str]:
    """The query parameter names a route (and its dependencies) reads."""
    known = _declared.get(id(route))
    if known is None:
        known = _declared[id(route)] = _collect(route)
    return known


def _collect(route: APIRoute) -> frozenset[str]:
    names: set[str] = set()
    todo: list[Dependant] = [route.dependant]
    while todo:
        dependant = todo.pop()
        names.update(param.alias for param in dependant.query_params)
        todo.extend(dependant.dependencies)
    return frozenset(names)


async def refuse_unknown_query(conn: HTTPConnection) -> None:
    """A coroutine, so it runs on the event loop: every request passes here, and a plain
    function dependency would cost each one a worker thread's round trip (see deps.py)."""
    route = conn.scope.get("route")
    if conn.scope["type"] != "http" or not isinstance(route, APIRoute):
        return  # the event socket takes ?token=, read by hand
    known = declared(route)
    for name in conn.query_params:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            choices = ", ".join(sorted(known)) or "none"
            raise GdosError(
                ErrorCode.VALIDATION_FAILED,
                f"unknown query parameter {name[:64]}{hint}; this endpoint takes: {choices}",
                {"field": name[:64], "allowed": sorted(known)},
            )
