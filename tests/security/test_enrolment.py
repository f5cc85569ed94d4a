"""Enrolment and node identity: expired or revoked join tokens, removed nodes, and an agent that
tries to speak for another node."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support import build_package, wait_for


def enroll(master, token: str, hostname: str = "h") -> httpx.Response:
    return httpx.post(
        master.url + "/api/v1/agent/enroll",
        json={"join_token": token, "host": {"hostname": hostname}},
    )


def test_expired_join_token_is_refused(shared_master, shared_api):
    tok = shared_api.post("/join-tokens", {"ttl_seconds": 1})
    time.sleep(1.5)
    r = enroll(shared_master, tok["token"])
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]


def test_join_token_is_not_kept_on_the_node(master, api, agent_factory):
    agent = agent_factory(master)
    agent.start_and_wait(api)
    token = master.join_token
    for path in agent.work_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), f"join token found in {path}"
    assert (agent.work_dir / "agent-credential.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_removed_node_cannot_reconnect(master, api, agent_factory):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    secret = json.loads((agent.work_dir / "agent-credential.json").read_text())["node_secret"]
    api.request("DELETE", f"/nodes/{node_id}", expect=204)
    wait_for(
        lambda: "refused this node's credential" in agent.tail(),
        timeout=30,
        what="agent told it was removed",
    )
    with pytest.raises(InvalidStatus) as info:
        connect(
            master.url.replace("http", "ws") + "/api/v1/agent/ws",
            additional_headers={"Authorization": f"Bearer {secret}"},
        )
    assert info.value.response.status_code == 403
    assert all(n["id"] != node_id for n in api.get("/nodes"))


@pytest.mark.slow
def test_an_agent_cannot_act_as_another_node(master, api, agent_factory, tmp_path):
    """Node B sends state reports about node A's instance: the master ignores them."""
    agent = agent_factory(master)
    node_a = agent.start_and_wait(api)
    api.upload(build_package(tmp_path))
    system = api.post("/systems", {"name": "s"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"})
    iid = api.post("/instances", {"module_id": module["id"], "node_id": node_a}, expect=202)["id"]
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deployed")

    secret_b = enroll(master, master.join_token, "mallory").json()["node_secret"]
    url = master.url.replace("http", "ws") + "/api/v1/agent/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {secret_b}"}) as ws:
        ws.send(
            json.dumps(
                {
                    "type": "hello",
                    "agent_version": "x",
                    "host": {"hostname": "mallory"},
                    "instances": [{"instance_id": iid, "state": "running", "pid": 1}],
                }
            )
        )
        ws.send(
            json.dumps(
                {"type": "instance_state", "instance_id": iid, "state": "failed", "error": "pwned"}
            )
        )
        ws.send(json.dumps({"type": "heartbeat", "ts": 0}))
        time.sleep(1.0)
    inst = api.get(f"/instances/{iid}")
    assert (
        inst["state"] == "stopped" and inst["last_error"] != "pwned" and inst["node_id"] == node_a
    )


def audit_rows(api, action: str) -> list[dict]:
    return [e for e in api.get("/audit", params={"action": action, "limit": 1000})]


def test_a_single_use_token_enrols_one_agent_and_refuses_the_next(master, api, agent_factory):
    tok = api.post("/join-tokens", {"ttl_seconds": 600, "max_uses": 1}, expect=201)
    assert (tok["max_uses"], tok["uses"]) == (1, 0)
    first = agent_factory(master, "first", token=tok["token"])
    node_id = first.start_and_wait(api)
    second = agent_factory(master, "second", token=tok["token"])
    second.start()
    wait_for(lambda: not second.alive(), timeout=30, what="the second agent to give up")
    assert second.popen is not None and second.popen.returncode == 2
    assert "join token is used up: it allowed 1 node(s)" in second.tail()
    assert not (second.work_dir / "agent-credential.json").exists()
    r = enroll(master, tok["token"], "third")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert r.json()["error"]["details"] == {"join_token_id": tok["id"], "max_uses": 1}
    # Nothing else changed: one node, online; the default token still enrols.
    assert [n["id"] for n in api.get("/nodes")] == [node_id]
    assert enroll(master, master.join_token, "other").status_code == 201
    used = [e for e in audit_rows(api, "enroll") if e["detail"].get("join_token_id") == tok["id"]]
    assert [(e["result"], e["detail"].get("uses")) for e in used] == [
        ("denied", None),  # newest first: the third call, then the second agent
        ("denied", None),
        ("ok", 1),
    ]


def test_a_token_for_n_nodes_enrols_exactly_n_even_at_once(shared_master, shared_api):
    tok = shared_api.post("/join-tokens", {"max_uses": 3}, expect=201)
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda i: enroll(shared_master, tok["token"], f"n{i}").status_code, range(8))
        )
    assert sorted(codes) == [201] * 3 + [403] * 5
    # No limit (the default) stays unlimited.
    free = shared_api.post("/join-tokens", {"ttl_seconds": 60}, expect=201)
    assert free["max_uses"] is None
    assert [enroll(shared_master, free["token"], f"f{i}").status_code for i in range(4)] == [
        201
    ] * 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_max_uses_must_be_a_positive_integer(shared_api, bad):
    r = shared_api.request("POST", "/join-tokens", json={"max_uses": bad})
    assert r.status_code == 422, r.text


def test_default_token_use_and_a_replaced_connection_are_audited(master, api, agent_factory):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    enrolled = [e for e in audit_rows(api, "enroll") if e["target"] == f"node={node_id}"]
    assert len(enrolled) == 1
    assert enrolled[0]["detail"]["join_token"] == "default"
    assert enrolled[0]["detail"]["hostname"]

    # A second connection with the same node credential (a copied credential file).
    secret = json.loads((agent.work_dir / "agent-credential.json").read_text())["node_secret"]
    url = master.url.replace("http", "ws") + "/api/v1/agent/ws"
    hello = {"type": "hello", "agent_version": "x", "host": {"hostname": "copy"}, "instances": []}
    with connect(url, additional_headers={"Authorization": f"Bearer {secret}"}) as ws:
        ws.send(json.dumps(hello))
        wait_for(
            lambda: "4409: replaced by a newer connection" in agent.tail(),
            timeout=15,
            what="the real agent's socket closed as replaced",
        )
        # The real agent reconnects in turn: now this copy is the older one and is closed.
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=30)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4409
    replaced = wait_for(
        lambda: len(rows := audit_rows(api, "agent_connection_replaced")) >= 2 and rows,
        timeout=10,
        what="two replacements audited",
    )
    assert {r["target"] for r in replaced} == {f"node={node_id}"}
    assert all(r["result"] == "replaced" and r["detail"]["previous_ip"] for r in replaced)
    assert api.get(f"/nodes/{node_id}")["status"] == "online"


def test_a_removed_node_is_gone_from_the_api(shared_master, shared_api):
    """Found by fuzzing: a removed node was still read (200) and patched by its id."""
    node_id = enroll(shared_master, shared_master.join_token, "removed").json()["node_id"]
    shared_api.request("DELETE", f"/nodes/{node_id}", expect=204)
    assert shared_api.request("GET", f"/nodes/{node_id}").status_code == 404
    assert shared_api.request("PATCH", f"/nodes/{node_id}", json={"labels": {}}).status_code == 404
    assert shared_api.request("DELETE", f"/nodes/{node_id}").status_code == 404
