"""Two masters on one PostgreSQL database and one S3 bucket: an alert firing on the master that
holds the node, and leads, stays one alert when that master is killed -9 (a leader failover too),
and its webhook receiver hears it fire once (at most one resend, with the same delivery id) and
resolve once, from the survivor."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_failover import holder
from tests.e2e.test_s3_store import s3_flags
from tests.master.test_webhooks import Receiver
from tests.support import Master, build_package, free_port, start_masters, wait_for

pytestmark = pytest.mark.slow


def test_a_firing_alert_survives_the_kill_of_its_master_as_one_alert(
    agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path
):
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "alert-failover")]
    a, b = (Master(tmp_path / name, extra=flags) for name in ("a", "b"))
    receiver = Receiver([])
    try:
        ids = start_masters([a, b])
        # A is the leader, so that its kill is a leader failover too.
        leader = wait_for(
            lambda: next((m["id"] for m in a.api().get("/masters") if m["leader"]), None),
            30,
            what="a leader",
        )
        if leader == ids[b]:
            a, b = b, a
        api_a, api_b = a.api(), b.api()
        # The rule is made on B: A reads it from the database within a second, as any master does.
        rule = api_b.post(
            "/alert-rules",
            {
                "name": "web down",
                "metric": "state",
                "op": "==",
                "threshold": "stopped",
                "webhook_url": receiver.url,
                "resolve_for_seconds": 1,
            },
        )
        maker = next(m for m in (a, b) if (m.data_dir / "join-token").exists())
        agent = agent_factory(a, extra=["--master", f"{a.url},{b.url}"], token=maker.join_token)
        node_id = agent.start_and_wait(api_a)
        port = free_port()
        api_a.upload(build_package(tmp_path / "pkgs", manifest={"args": ["--port", str(port)]}))
        system = api_a.post("/systems", {"name": "ha"})
        module = api_a.post(f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"})
        iid = api_a.post("/instances", {"module_id": module["id"], "node_id": node_id})["id"]

        def events(kind: str) -> list[tuple[str, str]]:
            return [
                (h["x-gdos-delivery"], body["alert"]["id"])
                for h, body in list(receiver.requests)
                if body["event"] == kind
            ]

        # Deployed, not started: the alert fires on A, which holds the node.
        wait_for(lambda: events("firing"), 60, what=f"the firing webhook\n{a.tail()}")
        [(_, alert_id)] = events("firing")

        # kill -9 the master holding the node; the agent says hello to B.
        a.kill9()
        wait_for(lambda: holder(api_b, node_id) == ids[b], 30, what="the node on B")
        wait_for(
            lambda: [m["id"] for m in api_b.get("/masters") if m["leader"]] == [ids[b]],
            30,
            what="B leading",
        )
        time.sleep(2.0)  # B's engine has taken the node's open alert, and judged it again
        [alert] = api_b.get("/alerts", params={"rule_id": rule["id"]})
        assert alert["id"] == alert_id and alert["state"] == "firing"

        # Started through B: the same alert resolves, and the receiver hears it once.
        api_b.post(f"/instances/{iid}/start")
        wait_for(lambda: events("resolved"), 30, what=f"the resolved webhook\n{b.tail()}")
        time.sleep(0.5)
        [alert] = api_b.get("/alerts", params={"rule_id": rule["id"]})
        assert alert["id"] == alert_id and alert["state"] == "resolved"
        fired = events("firing")
        assert len(fired) <= 2 and {d for d, _ in fired} == {fired[0][0]}, fired  # a resend
        assert [a_id for _, a_id in events("resolved")] == [alert_id]
    finally:
        receiver.close()
        for m in (a, b):
            m.stop()
