"""Enrolment and node identity: expired or revoked join tokens, removed nodes, and an agent that
tries to speak for another node."""

import json
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
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


def test_a_removed_node_is_gone_from_the_api(shared_master, shared_api):
    """Found by fuzzing: a removed node was still read (200) and patched by its id."""
    node_id = enroll(shared_master, shared_master.join_token, "removed").json()["node_id"]
    shared_api.request("DELETE", f"/nodes/{node_id}", expect=204)
    assert shared_api.request("GET", f"/nodes/{node_id}").status_code == 404
    assert shared_api.request("PATCH", f"/nodes/{node_id}", json={"labels": {}}).status_code == 404
    assert shared_api.request("DELETE", f"/nodes/{node_id}").status_code == 404
