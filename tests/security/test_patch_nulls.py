"""Every PATCH body, found in the app's own routes: an explicit null for a field that cannot be
null is a 422 naming the field (it was a 500 where the column is NOT NULL), a null that means
something gets through, and the master's OpenAPI schema offers null exactly where it is taken."""

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from master.app import create_app
from master.config import Settings
from protocol.rest import PatchBody
from tests.master.test_api_auth import error_of


def patch_routes() -> list[tuple[str, type]]:
    """(path, body model) of every PATCH route with a JSON body."""
    out = []
    for ctx in iter_route_contexts(create_app(Settings()).routes):
        route = ctx.route
        if isinstance(route, APIRoute) and "PATCH" in (route.methods or ()) and route.body_field:
            model = route.body_field.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                out.append((route.path, model))
    return sorted(out, key=lambda r: r[0])


ROUTES = patch_routes()


def test_the_walk_finds_the_patch_bodies():
    found = {model.__name__ for _, model in ROUTES}
    assert {"AlertRulePatch", "ModulePatch", "NodePatch", "SystemPatch"} <= found


@pytest.mark.parametrize(("path", "model"), ROUTES, ids=[p for p, _ in ROUTES])
def test_every_patch_body_is_a_patch_body(path, model):
    assert issubclass(model, PatchBody), f"PATCH {path} takes {model.__name__}, not a PatchBody"


def offers_null(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(o.get("type") == "null" or "null" in (o.get("type") or []) for o in options)


def body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    content = doc["paths"][path]["patch"]["requestBody"]["content"]["application/json"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
    return doc["components"]["schemas"][ref]


@pytest.mark.parametrize("path", [p for p, _ in ROUTES])
def test_null_is_taken_exactly_where_the_schema_offers_it(shared_master, shared_api, path):
    doc = httpx.get(shared_master.url + "/openapi.json", timeout=30).json()
    properties = body_schema(doc, path)["properties"]
    assert properties
    url = re.sub(r"\{[^}]+\}", "no-such-id", path).removeprefix("/api/v1")
    for name, schema in properties.items():
        r = shared_api.request("PATCH", url, json={name: None})
        if offers_null(schema):
            # The body is valid, so the route runs and finds no such id.
            assert r.status_code == 404, f"{name}: {r.text}"
            continue
        assert r.status_code == 422, f"{name}: {r.text}"
        err = error_of(r)
        assert err["details"]["field"] == name, err
        assert (
            err["message"]
            == f"{name}: cannot be null: leave the field out to keep its current value"
        )
