"""WebSocket hygiene: no cross-origin upgrades, bad frames close with the right code without
hurting other clients, and a flood of idle sockets is bounded."""

import itertools
import json
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

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


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _flood_agent_channel(url: str, secret: str, until: float, sent: list[int]) -> None:
    """Valid JSON the master does not understand, at full speed, with a malformed frame now and
    then (which closes the socket: connect again and go on)."""
    junk = [
        json.dumps({"type": "from-the-future", "pad": "x" * 200}),
        json.dumps({"type": "metrics", "ts": "not a number"}),
        json.dumps({"type": "instance_state", "instance_id": "nope", "state": "bogus"}),
    ]
    hello = {"type": "hello", "agent_version": "x", "host": {"hostname": "flood"}, "instances": []}
    while time.monotonic() < until:
        try:
            with connect(url, additional_headers={"Authorization": f"Bearer {secret}"}) as ws:
                ws.send(json.dumps(hello))
                for i in itertools.count():
                    if time.monotonic() > until:
                        return
                    ws.send("}{" if i % 5000 == 4999 else junk[i % 3])
                    sent[0] += 1
        except (ConnectionClosed, OSError):
            continue


def _flood_event_stream(url: str, token: str, until: float, sent: list[int]) -> None:
    """Subscriptions to keys that do not exist, churned at full speed; binary now and then."""
    while time.monotonic() < until:
        try:
            with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                for i in itertools.count():
                    if time.monotonic() > until:
                        return
                    keys = [f"metrics:bogus{i}-{k}" for k in range(50)]
                    if i % 2000 == 1999:
                        ws.send(b"\x00binary")
                    else:
                        ws.send(json.dumps({"subscribe": keys, "unsubscribe": keys[:25]}))
                    sent[0] += 1
        except (ConnectionClosed, OSError):
            continue


@pytest.mark.slow
def test_a_flood_of_garbage_frames_is_bounded_and_agents_keep_beating(master, api, agent_factory):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    secret = enroll(master)  # a second, misbehaving node
    bystander = EventStream(master.url, api.token)
    log_lines = len(master.log_path.read_text().splitlines())
    before = _rss(master.pid)
    until = time.monotonic() + 5
    agent_sent, event_sent = [0], [0]
    floods = [
        threading.Thread(
            target=_flood_agent_channel,
            args=(ws_url(master, "/api/v1/agent/ws"), secret, until, agent_sent),
        )
        for _ in range(2)
    ] + [
        threading.Thread(
            target=_flood_event_stream,
            args=(ws_url(master, "/api/v1/events"), api.token, until, event_sent),
        )
        for _ in range(2)
    ]
    for t in floods:
        t.start()
    peak, worst = before, 0.0
    while any(t.is_alive() for t in floods):
        node = api.get(f"/nodes/{node_id}")
        assert node["status"] == "online"
        seen = datetime.fromisoformat(node["last_seen"].replace("Z", "+00:00"))
        worst = max(worst, (datetime.now(UTC) - seen).total_seconds())
        peak = max(peak, _rss(master.pid))
        time.sleep(0.25)
    for t in floods:
        t.join(30)
    assert agent_sent[0] > 5000 and event_sent[0] > 1000, (agent_sent, event_sent)
    assert worst < 2.5, f"the real agent's heartbeats were {worst:.1f} s late during the flood"
    grown = peak - before
    assert grown < 48 << 20, f"master RSS grew by {grown >> 20} MiB during the flood"
    # The log tells of the junk a few lines a minute, not a line per frame; nothing crashed.
    new_log = master.log_path.read_text().splitlines()[log_lines:]
    assert sum("sent an invalid message" in line for line in new_log) <= 10
    assert not [line for line in new_log if "Traceback" in line or "Exception in ASGI" in line]
    # Everything still works: a state change reaches the stream, the agent is online.
    api.post("/systems", {"name": "after-the-flood"}, expect=201)
    wait_for(
        lambda: any(d.get("name") == "after-the-flood" for d in bystander.topic("system")),
        timeout=10,
    )
    bystander.close()
    assert api.get(f"/nodes/{node_id}")["status"] == "online"
