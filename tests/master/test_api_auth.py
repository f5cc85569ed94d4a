"""Credentials, roles and error bodies against a real master."""

import httpx
import pytest

from protocol.messages import HostInfo
from tests.support import Api, wait_for


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"])
    assert "Traceback" not in r.text
    return body["error"]


def test_healthz_needs_no_credentials(shared_master):
    r = httpx.get(shared_master.url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic YWRtaW46YWRtaW4=", "Bearer"])
def test_missing_or_wrong_token_is_401(shared_master, header):
    headers = {"Authorization": header} if header else {}
    r = httpx.get(shared_master.url + "/api/v1/nodes", headers=headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthenticated"


def test_wrong_password_is_401_and_audited(shared_master, shared_api):
    r = httpx.post(
        shared_master.url + "/api/v1/auth/login", json={"username": "admin", "password": "wrong"}
    )
    assert r.status_code == 401
    r2 = httpx.post(
        shared_master.url + "/api/v1/auth/login", json={"username": "ghost", "password": "wrong"}
    )
    assert r2.status_code == 401
    assert error_of(r)["message"] == error_of(r2)["message"]  # does not tell which one was wrong
    rows = shared_api.get("/audit", params={"action": "login"})
    results = {(row["actor"], row["result"]) for row in rows}
    assert ("admin", "denied") in results and ("ghost", "denied") in results


def test_viewer_cannot_write(shared_master, shared_api):
    shared_api.post(
        "/users", {"username": "vera", "password": "viewer-pass-1", "role": "viewer"}, expect=201
    )
    viewer = Api.login(shared_master.url, "vera", "viewer-pass-1")
    assert viewer.request("GET", "/systems").status_code == 200
    r = viewer.request("POST", "/systems", json={"name": "nope"})
    assert r.status_code == 403
    assert error_of(r)["code"] == "forbidden"
    assert viewer.request("GET", "/users").status_code == 403
    assert viewer.request("DELETE", "/users/admin").status_code == 403


def test_operator_cannot_manage_users(shared_master, shared_api):
    shared_api.post(
        "/users", {"username": "otto", "password": "operator-pass", "role": "operator"}, expect=201
    )
    op = Api.login(shared_master.url, "otto", "operator-pass")
    assert op.request("POST", "/systems", json={"name": "ops-sys"}).status_code == 201
    assert (
        op.request(
            "POST", "/users", json={"username": "x", "password": "xxxxxxxxx", "role": "admin"}
        ).status_code
        == 403
    )


def test_agent_credential_is_refused_on_operator_routes(shared_master):
    host = HostInfo(hostname="fake-host").to_dict()
    r = httpx.post(
        shared_master.url + "/api/v1/agent/enroll",
        json={"join_token": shared_master.join_token, "host": host},
    )
    assert r.status_code == 201
    secret = r.json()["node_secret"]
    agent = Api(shared_master.url, secret)
    for method, path in [
        ("GET", "/nodes"),
        ("POST", "/systems"),
        ("GET", "/users"),
        ("GET", "/audit"),
        ("GET", "/nodes/x/metrics"),  # a viewer's read, unless a peer master asks
    ]:
        resp = agent.request(method, path, json={"name": "x"} if method == "POST" else None)
        assert resp.status_code == 403, (method, path, resp.text)


def test_bad_join_token_is_refused(shared_master):
    host = HostInfo(hostname="intruder").to_dict()
    r = httpx.post(
        shared_master.url + "/api/v1/agent/enroll", json={"join_token": "gdj_forged", "host": host}
    )
    assert r.status_code == 401
    assert "join token" in error_of(r)["message"]


def test_revoked_join_token_is_refused(shared_master, shared_api):
    tok = shared_api.post("/join-tokens", {"ttl_seconds": 60})
    shared_api.request("DELETE", f"/join-tokens/{tok['id']}", expect=204)
    r = httpx.post(
        shared_master.url + "/api/v1/agent/enroll",
        json={"join_token": tok["token"], "host": {"hostname": "h"}},
    )
    assert r.status_code == 401


def test_malformed_json_is_400(shared_api):
    for body in (b"{bad", b"[1,", b"\xff\xfe"):
        r = shared_api.request(
            "POST", "/systems", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert error_of(r)["code"] == "invalid_json"


def test_invalid_content_is_422_naming_the_field(shared_api):
    r = shared_api.request("POST", "/systems", json={"name": "has space"})
    assert r.status_code == 422
    err = error_of(r)
    assert err["details"]["problems"][0]["field"] == "name"
    r = shared_api.request("POST", "/systems", json={"name": "ok", "surprise": 1})
    assert r.status_code == 422


def test_unknown_ids_are_404(shared_api):
    for path in ("/nodes/nope", "/systems/nope", "/instances/nope", "/packages/nope"):
        r = shared_api.request("GET", path)
        assert r.status_code == 404, path
        assert error_of(r)["code"] == "not_found"
    assert shared_api.request("POST", "/instances/nope/start").status_code == 404


def test_token_expires(master_factory):
    m = master_factory("short", extra=["--token-ttl", "1"])
    api = m.api()
    assert api.request("GET", "/nodes").status_code == 200
    wait_for(
        lambda: api.request("GET", "/nodes").status_code == 401, timeout=10, what="token expiry"
    )


def test_every_write_is_audited(shared_api):
    shared_api.post("/systems", {"name": "audited-sys"}, expect=201)
    shared_api.request("POST", "/systems", json={"name": "audited-sys"}, expect=409)
    rows = shared_api.get("/audit", params={"action": "create_system"})
    results = [r["result"] for r in rows]
    assert "ok" in results and "error_409" in results
    assert all(
        r["actor"] == "admin" and r["source_ip"] == "127.0.0.1"
        for r in rows
        if r["actor"] == "admin"
    )
    csv_text = shared_api.request("GET", "/audit", params={"format": "csv"}, expect=200).text
    assert csv_text.splitlines()[0].startswith("ts,actor,action")


def test_admin_password_generated_when_not_given(tmp_path):
    from tests.support import Master

    m = Master(tmp_path / "gen")
    m.argv = [a for a in m.argv if a not in ("--admin-password", "test-admin-pw")]
    m.launch()
    try:
        pw_file = tmp_path / "gen" / "initial-admin-password"
        assert pw_file.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "gen" / "join-token").stat().st_mode & 0o777 == 0o600
        Api.login(m.url, "admin", pw_file.read_text().strip())
    finally:
        m.stop()


def test_a_deleted_users_token_is_refused_at_once(shared_master, shared_api):
    shared_api.post(
        "/users", {"username": "brief", "password": "brief-pass-1", "role": "viewer"}, expect=201
    )
    viewer = Api.login(shared_master.url, "brief", "brief-pass-1")
    assert viewer.request("GET", "/systems").status_code == 200  # verified, remembered
    shared_api.request("DELETE", "/users/brief").raise_for_status()
    assert viewer.request("GET", "/systems").status_code == 401


def test_a_removed_nodes_credential_is_refused_at_once(shared_master, shared_api):
    host = HostInfo(hostname="brief-node").to_dict()
    r = httpx.post(
        shared_master.url + "/api/v1/agent/enroll",
        json={"join_token": shared_master.join_token, "host": host},
    )
    assert r.status_code == 201
    node = Api(shared_master.url, r.json()["node_secret"])
    assert node.request("GET", "/nodes").status_code == 403  # known (remembered), not allowed
    shared_api.request("DELETE", f"/nodes/{r.json()['node_id']}").raise_for_status()
    assert node.request("GET", "/nodes").status_code == 401
