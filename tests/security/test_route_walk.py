"""Walk the app's own route table: nothing answers without credentials, viewers cannot write,
agent credentials cannot act as operators, and an agent cannot act as another node."""

import re

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from master.api.routes import walk
from master.app import create_app
from master.config import Settings
from tests.support import ADMIN_PASSWORD, Api

# Reachable without credentials, on purpose.
PUBLIC = {("GET", "/healthz"), ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/agent/enroll")}
# Reachable with a node credential, on purpose (agents fetch packages and hold their socket).
AGENT_ALLOWED = {("GET", "/api/v1/packages/{package_id}/download"), ("WS", "/api/v1/agent/ws")}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def route_table() -> list[tuple[str, str]]:
    out = []
    for route in walk(create_app(Settings())):
        if route.kind == "websocket":
            out.append(("WS", route.path))
        elif route.path not in DOCS:
            out.extend((m, route.path) for m in sorted(route.methods - {"HEAD"}))
    return out


ROUTES = route_table()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x0", path)


def call(base: str, method: str, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "WS":
        url = base.replace("http://", "ws://") + concrete(path)
        try:
            with connect(url, additional_headers=headers, open_timeout=10) as ws:
                ws.recv(timeout=5)  # an authenticated agent socket waits for hello; others close
        except InvalidStatus as exc:
            return exc.response.status_code
        except Exception:
            return 101
        return 101
    body: dict[str, str] | None = {} if method in ("POST", "PUT", "PATCH") else None
    return httpx.request(
        method, base + concrete(path), headers=headers, timeout=30, json=body
    ).status_code


def test_the_walk_sees_the_routes():
    assert ("GET", "/api/v1/nodes") in ROUTES
    assert ("WS", "/api/v1/events") in ROUTES and ("WS", "/api/v1/agent/ws") in ROUTES
    assert len(ROUTES) > 25


@pytest.mark.parametrize(
    ("method", "path"), [r for r in ROUTES if r not in PUBLIC], ids=lambda v: str(v)
)
def test_no_credentials_no_answer(shared_master, method, path):
    status = call(shared_master.url, method, path, None)
    assert status in (401, 403), f"{method} {path} answered {status} without credentials"


@pytest.fixture(scope="module")
def viewer(shared_master, shared_api):
    shared_api.post(
        "/users", {"username": "walker", "password": "walker-pass", "role": "viewer"}, expect=201
    )
    return Api.login(shared_master.url, "walker", "walker-pass")


@pytest.fixture(scope="module")
def node_secret(shared_master):
    r = httpx.post(
        shared_master.url + "/api/v1/agent/enroll",
        json={"join_token": shared_master.join_token, "host": {"hostname": "walk"}},
    )
    assert r.status_code == 201
    return r.json()["node_secret"]


WRITES = [r for r in ROUTES if r[0] in ("POST", "PUT", "PATCH", "DELETE") and r not in PUBLIC]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=lambda v: str(v))
def test_viewer_cannot_write(shared_master, viewer, method, path):
    status = call(shared_master.url, method, path, viewer.token)
    assert status == 403, f"{method} {path} answered {status} to a viewer"


OPERATOR_ROUTES = [r for r in ROUTES if r not in PUBLIC and r not in AGENT_ALLOWED]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES, ids=lambda v: str(v))
def test_agent_credential_cannot_act_as_operator(shared_master, node_secret, method, path):
    status = call(shared_master.url, method, path, node_secret)
    assert status in (401, 403), f"{method} {path} answered {status} to an agent credential"


def test_the_api_description_is_public_by_choice_and_holds_no_secret(shared_master, shared_api):
    """/openapi.json, /docs and /redoc answer without credentials (docs/DESIGN.md says why): they
    describe the routes walked above, which all refuse anonymous callers, and carry no secret."""
    secrets = [ADMIN_PASSWORD, shared_master.join_token, shared_api.token]
    doc = httpx.get(shared_master.url + "/openapi.json", timeout=30)
    assert doc.status_code == 200
    described = {path for path in doc.json()["paths"]}
    assert {concrete(p) for m, p in ROUTES if m != "WS"} <= {concrete(p) for p in described}
    for path in ("/docs", "/redoc"):
        page = httpx.get(shared_master.url + path, timeout=30)
        assert page.status_code == 200 and "/openapi.json" in page.text
        assert not [s for s in secrets if s in page.text], f"{path} shows a secret"
    assert not [s for s in secrets if s in doc.text], "the OpenAPI document holds a secret"
    assert not re.search(r"gd[jnu]_[A-Za-z0-9_-]{8,}", doc.text), "a token-like string"
