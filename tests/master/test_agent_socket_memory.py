"""An agent's socket keeps nothing of its hello once greeted: a fleet's hellos (every instance's
report) would otherwise stay in memory for as long as each agent is connected."""

import gc
import json
import time
from pathlib import Path

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
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


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
            "instances": [{"instance_id": f"unknown{n}", "state": "running"} for n in range(3)],
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
