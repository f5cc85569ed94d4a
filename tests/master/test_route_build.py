"""FastAPI builds an included router's routes at the first request reaching them; the master
has them built before it serves, so the first requests after a restart do not hold the loop."""

from pathlib import Path
from typing import Any

import pytest
from fastapi import routing

from master.serving import build_routes
from tests.master.inprocess import make_app, running


def test_routes_built_before_serving_are_not_built_again_by_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path)
    assert build_routes(app.router.routes) >= 10  # the API's routers, each built
    built_later: list[str] = []
    original = routing._EffectiveRouteContext.from_api_route  # bound to its class

    def counted(*, original_route: Any, include_context: Any) -> Any:
        built_later.append(original_route.path)
        return original(original_route=original_route, include_context=include_context)

    monkeypatch.setattr(routing._EffectiveRouteContext, "from_api_route", staticmethod(counted))
    with running(app) as (client, auth):
        assert client.get("/api/v1/nodes", headers=auth).status_code == 200
        assert client.get("/api/v1/operations", headers=auth).status_code == 200
    assert built_later == []
