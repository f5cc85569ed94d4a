"""Monitoring and alerts end to end: a real master, a real agent, real misbehaving services.

One scenario (one master, one agent, three services) to keep the runtime down:
a CPU burner fires `cpu_percent > 50 for 3s` and resolves when told to calm down, a memory
grower fires an `rss_bytes` alert, a killed service fires a `state` alert, a local HTTP server
receives the webhooks, and a lost agent raises one node alert while its instances stay quiet.
"""

import http.server
import json
import os
import signal
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import EventStream, build_package, wait_for

pytestmark = pytest.mark.slow

# One service, three behaviours (its first argument). The burner runs two busy processes so
# the instance stays above 50 % of a core even on a loaded machine; both stop when the file
# `calm` appears in their working directory.
PROBE = """\
import os, subprocess, sys, time
mode = sys.argv[1]
if mode == "burn":
    if len(sys.argv) == 2:
        subprocess.Popen([sys.executable, __file__, "burn", "child"])
    while not os.path.exists("calm"):
        end = time.time() + 0.05
        while time.time() < end:
            pass
    while True:
        time.sleep(1)
elif mode == "grow":
    hog = []
    while True:
        if len(hog) < 30:
            hog.append(bytearray(5 << 20))  # 5 MB every 0.1 s, up to 150 MB
        time.sleep(0.1)
else:
    while True:
        time.sleep(1)
"""
MB = 1 << 20


class Hook:
    """A local webhook receiver."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.headers.append({k.lower(): v for k, v in self.headers.items()})
                hook.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gdos"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, event: str, target_id: str) -> dict | None:
        for body in list(self.bodies):
            if body["event"] == event and body["alert"]["target_id"] == target_id:
                return body
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alert_event(events: EventStream, target_id: str, state: str, rule_id: str | None = None):
    for data in events.topic("alert"):
        same = data["target_id"] == target_id and data["state"] == state
        if same and (rule_id is None or data["rule_id"] == rule_id):
            return data
    return None


def test_alerts_fire_resolve_notify_and_respect_node_loss(master, api, agent_factory, tmp_path):
    hook = Hook()
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    api.upload(build_package(tmp_path / "pkg", name="probe", script=PROBE))
    system = api.post("/systems", {"name": "mon"})
    ids = {}
    for mode in ("burn", "grow", "sleep"):
        mod = api.post(
            f"/systems/{system['id']}/modules", {"name": mode, "package": "probe", "args": [mode]}
        )
        ids[mode] = api.post("/instances", {"module_id": mod["id"], "node_id": node_id})["id"]
    for iid in ids.values():
        wait_for(lambda i=iid: api.get(f"/instances/{i}")["state"] == "stopped", what="deployed")

    hot = api.post(
        "/alert-rules",
        {
            "name": "burner hot",
            "metric": "cpu_percent",
            "op": ">",
            "threshold": 50,
            "for_seconds": 3,
            "scope": {"instance_id": ids["burn"]},
            "severity": "critical",
            "webhook_url": hook.url,
            "resolve_for_seconds": 2,
        },
        expect=201,
    )
    fat = api.post(
        "/alert-rules",
        {
            "name": "grower fat",
            "metric": "rss_bytes",
            "op": ">",
            "threshold": 100 * MB,
            "for_seconds": 1,
            "scope": {"instance_id": ids["grow"]},
        },
        expect=201,
    )
    died = api.post(
        "/alert-rules",
        {
            "name": "died",
            "metric": "state",
            "op": "==",
            "threshold": "exited",
            "scope": {"system_id": system["id"]},
            "webhook_url": hook.url,
        },
        expect=201,
    )
    events = EventStream(master.url, api.token)
    events.send({"subscribe": [f"metrics:{ids['burn']}", f"metrics:{node_id}"]})
    try:
        for iid in ids.values():
            api.post(f"/instances/{iid}/start", expect=202)
        # Made once all three run: a start slower than its for_seconds (a loaded machine) would
        # rightly fire it for the burner, and this test is about what a node loss leaves quiet.
        for iid in ids.values():
            wait_for(lambda i=iid: api.get(f"/instances/{i}")["state"] == "running", what="running")
        not_running = api.post(
            "/alert-rules",
            {
                "name": "not running",
                "metric": "state",
                "op": "!=",
                "threshold": "running",
                "for_seconds": 1,
                "scope": {"system_id": system["id"]},
            },
            expect=201,
        )

        # CPU: fires (event, history, webhook with the documented body), then resolves.
        firing = wait_for(
            lambda: alert_event(events, ids["burn"], "firing"), timeout=60, what="cpu alert"
        )
        assert firing["rule_id"] == hot["id"] and firing["value"] > 50
        assert firing["severity"] == "critical" and firing["target"] == f"instance/{ids['burn']}"
        body = wait_for(lambda: hook.find("firing", ids["burn"]), what="firing webhook")
        assert set(body) == {"version", "event", "alert", "rule", "master", "sent_at"}
        assert body["version"] == 1 and body["master"] == master.url
        assert body["alert"]["id"] == firing["id"] and body["alert"]["state"] == "firing"
        assert body["rule"] == {
            "id": hot["id"],
            "name": "burner hot",
            "metric": "cpu_percent",
            "op": ">",
            "threshold": 50.0,
            "for_seconds": 3.0,
            "severity": "critical",
        }
        headers = hook.headers[hook.bodies.index(body)]
        assert headers["x-gdos-event"] == "firing" and headers["content-type"] == "application/json"

        app_dir = agent.work_dir / ids["burn"] / "current" / "bin"
        (app_dir / "calm").write_text("")
        resolved = wait_for(
            lambda: alert_event(events, ids["burn"], "resolved"), timeout=60, what="cpu resolved"
        )
        assert resolved["id"] == firing["id"] and resolved["resolved_value"] < 50
        assert resolved["duration_seconds"] > 0
        assert wait_for(lambda: hook.find("resolved", ids["burn"]), what="resolved webhook")
        # Exactly one firing for the burner: no flapping while it calmed down.
        burner_alerts = api.get("/alerts", params={"target_id": ids["burn"]})
        assert [(a["state"], a["rule_id"]) for a in burner_alerts] == [("resolved", hot["id"])]

        # Memory: fires; ack is recorded once.
        fat_alert = wait_for(
            lambda: alert_event(events, ids["grow"], "firing", fat["id"]), timeout=60, what="rss"
        )
        assert fat_alert["value"] > 100 * MB
        acked = api.post(f"/alerts/{fat_alert['id']}/ack", expect=200)
        assert acked["acked"] and acked["acked_by"] == "admin" and acked["state"] == "firing"

        # A killed service: the state alert fires and is sent.
        pid = api.get(f"/instances/{ids['sleep']}")["pid"]
        os.kill(pid, signal.SIGKILL)
        dead = wait_for(
            lambda: alert_event(events, ids["sleep"], "firing", died["id"]), what="state alert"
        )
        assert dead["value"] == "exited"
        assert wait_for(lambda: hook.find("firing", ids["sleep"]), what="state webhook")

        # Live metrics reached the subscriber, the history has them, Prometheus parses.
        live = [d for d in events.topic("metrics") if d["id"] == ids["burn"]]
        assert live and max(d["cpu_percent"] for d in live) > 50
        assert any(d["id"] == node_id and d["kind"] == "node" for d in events.topic("metrics"))
        history = api.get(f"/instances/{ids['burn']}/metrics", params={"seconds": 120})
        assert max(s["cpu_percent"] for s in history["samples"]) > 50
        assert api.get(f"/nodes/{node_id}/metrics", params={"seconds": 30})["samples"]
        page = httpx.get(master.url + "/metrics", headers={"Authorization": f"Bearer {api.token}"})
        families = {f.name: f for f in text_string_to_metric_families(page.text)}
        rss = {
            s.labels["instance_id"]: s.value for s in families["gdos_instance_rss_bytes"].samples
        }
        assert rss[ids["grow"]] > 100 * MB and ids["burn"] in rss
        assert families["gdos_master_connected_agents"].samples[0].value == 1
        assert families["gdos_alerts_firing"].samples

        # The node goes away: one node alert; its instances turn unknown but stay quiet.
        before = len(events.topic("alert"))
        agent.kill9()
        node_alert = wait_for(
            lambda: alert_event(events, node_id, "firing"), timeout=20, what="node alert"
        )
        assert node_alert["rule_id"] == "node-offline" and node_alert["target_kind"] == "node"
        wait_for(lambda: api.get(f"/instances/{ids['burn']}")["state"] == "unknown", what="unknown")
        time.sleep(2.5)  # longer than the "not running" rule's for_seconds
        new = events.topic("alert")[before:]
        assert [(a["target_id"], a["state"]) for a in new] == [(node_id, "firing")], new
        assert not [
            a
            for a in api.get("/alerts")
            if a["rule_id"] == not_running["id"] and a["target_id"] != ids["sleep"]
        ]

        # Back again: the node alert resolves.
        agent.start()
        wait_for(lambda: alert_event(events, node_id, "resolved"), timeout=40, what="node resolved")
        firing_now = {
            (a["rule_id"], a["target_id"]) for a in api.get("/alerts", params={"state": "firing"})
        }
        assert (fat["id"], ids["grow"]) in firing_now and (died["id"], ids["sleep"]) in firing_now
        assert (not_running["id"], ids["burn"]) not in firing_now
    finally:
        events.close()
        hook.close()


def test_the_master_sets_the_agents_sampling_interval(master_factory, agent_factory):
    master = master_factory(extra=["--metrics-interval", "2"])
    api = master.api()
    agent = agent_factory(master, extra=["--metrics-interval", "1"])
    node_id = agent.start_and_wait(api)
    samples = wait_for(
        lambda: (
            (s := api.get(f"/nodes/{node_id}/metrics", params={"seconds": 60})["samples"])
            and len(s) >= 4
            and s
        ),
        timeout=60,
        what="node samples",
    )
    from protocol.rest import parse_iso

    stamps = [parse_iso(x["ts"]) for x in samples[-4:]]
    span = stamps[-1] - stamps[0]  # three intervals: ~6 s at the master's 2 s, ~3 s at 1 s
    assert 5 <= span <= 7, samples
