"""An agent's socket keeps nothing of its hello once greeted: a fleet's hellos (every instance's
report) would otherwise stay in memory for as long as each agent is connected."""

import gc
import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from master.api import middleware
from protocol.messages import Hello, InstanceReport
from tests.master.inprocess import make_app, running

HOST = {
    "hostname": "mem-1",
    "ip": "10.0.0.1",
    "os": "linux",
    "arch": "x86_64",
    "cpu_count": 2,
    "mem_total": 1 << 30,
}


def alive(kind: type) -> int:
    """This test's hellos and instance reports still in memory (other tests may hold theirs)."""
    gc.collect()
    count = 0
    for o in gc.get_objects():
        if isinstance(o, Hello) and kind is Hello:
            count += o.host.hostname == HOST["hostname"]
        elif type(o) is InstanceReport and kind is InstanceReport:
            count += o.instance_id.startswith("memtest")
    return count


def test_a_greeted_agent_socket_holds_no_hello(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with running(app) as (client, _auth):
        join = (tmp_path / "join-token").read_text().strip()
        enrolled = client.post("/api/v1/agent/enroll", json={"join_token": join, "host": HOST})
        assert enrolled.status_code == 201, enrolled.text
        secret = enrolled.json()["node_secret"]
        hello = {
            "type": "hello",
            "agent_version": "test",
            "host": HOST,
            "instances": [{"instance_id": f"memtest{n}", "state": "running"} for n in range(3)],
        }
        headers = {"Authorization": f"Bearer {secret}"}
        with client.websocket_connect("/api/v1/agent/ws", headers=headers) as ws:
            ws.send_text(json.dumps(hello))
            assert json.loads(ws.receive_text())["type"] == "config"  # greeted
            assert app.state.services.agents.get(enrolled.json()["node_id"]) is not None
            # The greeting ends just after the config is sent: allow it a moment to.
            deadline = time.monotonic() + 10
            while alive(Hello) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert alive(Hello) == 0
            assert alive(InstanceReport) == 0


def coroutines() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "coroutine")


def test_an_agent_socket_skips_the_routing_layers(tmp_path: Path) -> None:
    """Each layer an ASGI call passes keeps a coroutine for the connection's life: an agent's
    socket goes straight to its handler (about 20 fewer than through the router)."""
    app = make_app(tmp_path)
    with running(app) as (client, _auth):
        join = (tmp_path / "join-token").read_text().strip()
        secret = client.post(
            "/api/v1/agent/enroll", json={"join_token": join, "host": HOST}
        ).json()["node_secret"]
        hello = {"type": "hello", "agent_version": "test", "host": HOST}
        idle = coroutines()
        headers = {"Authorization": f"Bearer {secret}"}
        with client.websocket_connect("/api/v1/agent/ws", headers=headers) as ws:
            ws.send_text(json.dumps(hello))
            assert json.loads(ws.receive_text())["type"] == "config"
            held = coroutines() - idle
        print(f"coroutines held by one agent socket: {held}")
        assert held < 24  # 32 through the router, 17 past it (with the test client's own)


def test_a_closed_gate_refuses_an_agent_socket(tmp_path: Path, monkeypatch: Any) -> None:
    """During a restore an agent's socket waits at the gate, then is told to come back (1013)."""
    monkeypatch.setattr(middleware, "HOLD_TIMEOUT", 0.2)
    app = make_app(tmp_path)
    with running(app) as (client, _auth):
        app.state.services.gate.close()
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/agent/ws") as ws,
        ):
            ws.receive_text()
        assert refused.value.code == 1013
