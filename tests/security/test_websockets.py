"""WebSocket hygiene: no cross-origin upgrades, bad frames close with the right code without
hurting other clients, and a flood of idle sockets is bounded."""

import json
import socket
import time
from datetime import UTC, datetime

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from master.server import HEADER_TIMEOUT, MAX_SILENT
from tests.support import EventStream, wait_for


def ws_url(master, path: str) -> str:
    return master.url.replace("http://", "ws://") + path


def enroll(master) -> str:
    r = httpx.post(
        master.url + "/api/v1/agent/enroll",
        json={"join_token": master.join_token, "host": {"hostname": "ws-test"}},
    )
    assert r.status_code == 201
    return r.json()["node_secret"]


def close_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(50):
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/agent/ws"])
def test_cross_origin_upgrade_is_refused(shared_master, shared_api, path):
    token = shared_api.token if path.endswith("events") else enroll(shared_master)
    headers = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(shared_master, path), additional_headers=headers, open_timeout=10)
    assert info.value.response.status_code == 403
    # The same request from the master's own origin is fine.
    same = {**headers, "Origin": shared_master.url}
    with connect(
        ws_url(shared_master, "/api/v1/events"),
        additional_headers={**same, "Authorization": f"Bearer {shared_api.token}"},
    ):
        pass


def test_bad_frames_close_with_the_right_code_and_spare_others(shared_master, shared_api):
    auth = {"Authorization": f"Bearer {shared_api.token}"}
    bystander = EventStream(shared_master.url, shared_api.token)
    cases = [
        (lambda ws: ws.send(b"\x00\x01binary"), 1003),
        (lambda ws: ws.send("{not json"), 1007),
        (lambda ws: ws.send(json.dumps([1, 2])), 1008),
        (lambda ws: ws.send("x" * (9 << 20)), 1009),  # over the 8 MiB frame limit
    ]
    for send, expected in cases:
        with connect(
            ws_url(shared_master, "/api/v1/events"), additional_headers=auth, max_size=None
        ) as ws:
            send(ws)
            assert close_code(ws) == expected
    # The bystander still gets events.
    shared_api.post("/systems", {"name": "after-bad-frames"}, expect=201)
    wait_for(
        lambda: any(d.get("name") == "after-bad-frames" for d in bystander.topic("system")),
        timeout=10,
    )
    bystander.close()


def test_agent_socket_closes_on_garbage(shared_master):
    secret = enroll(shared_master)
    with connect(
        ws_url(shared_master, "/api/v1/agent/ws"),
        additional_headers={"Authorization": f"Bearer {secret}"},
    ) as ws:
        ws.send(
            json.dumps(
                {"type": "hello", "agent_version": "t", "host": {"hostname": "g"}, "instances": []}
            )
        )
        ws.send(json.dumps({"type": "from-the-future"}))  # unknown types are skipped, not fatal
        ws.send("}{")
        assert close_code(ws) == 1007


@pytest.mark.slow
def test_idle_socket_flood_is_bounded_and_agents_keep_beating(master, api, agent_factory):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    flood = []
    for _ in range(MAX_SILENT + 100):
        s = socket.create_connection(("127.0.0.1", master.port))
        s.setblocking(False)
        flood.append(s)
    time.sleep(1)
    refused = sum(1 for s in flood if _closed(s))
    assert refused >= 100, f"only {refused} of the sockets over the cap were closed"

    def fresh() -> bool:
        seen = datetime.fromisoformat(
            api.get(f"/nodes/{node_id}")["last_seen"].replace("Z", "+00:00")
        )
        return (datetime.now(UTC) - seen).total_seconds() < 2.5

    deadline = time.monotonic() + HEADER_TIMEOUT + 5
    while time.monotonic() < deadline:
        assert api.get(f"/nodes/{node_id}")["status"] == "online"
        assert fresh(), "heartbeats were delayed by the flood"
        time.sleep(0.5)
    still_open = sum(1 for s in flood if not _closed(s))
    assert still_open == 0, f"{still_open} silent sockets outlived the header deadline"
    for s in flood:
        s.close()


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
