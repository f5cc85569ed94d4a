"""Monitoring and alerting API against a real master: bad input gets a clear error and leaves
everything as it was; `/metrics` is guarded and parses; agents' samples are accepted only for
their own instances (a simulated agent speaking the real protocol)."""

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.fleet import SimInstance, connected_agents
from tests.master.test_api_auth import error_of
from tests.support import Api, build_package, wait_for

RULE = {"name": "hot", "metric": "cpu_percent", "op": ">", "threshold": 80, "for_seconds": 5}


def rules_of(api: Api) -> list[dict]:
    return api.get("/alert-rules")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**RULE, "metric": "disk"}, 422, "metric"),
        ({**RULE, "op": ">="}, 422, "op"),
        ({**RULE, "threshold": "hot"}, 422, "threshold"),
        ({**RULE, "threshold": -5}, 422, "threshold"),
        ({**RULE, "for_seconds": -1}, 422, "for_seconds"),
        ({**RULE, "metric": "state", "threshold": "exploded", "op": "=="}, 422, "threshold"),
        ({**RULE, "metric": "state", "threshold": "exited"}, 422, "op"),
        ({**RULE, "severity": "apocalyptic"}, 422, "severity"),
        ({**RULE, "webhook_url": "not a url"}, 422, "webhook_url"),
        ({**RULE, "scope": {"node_id": "a", "instance_id": "b"}}, 422, "scope"),
        ({**RULE, "scope": {"node_id": "nope"}}, 404, "scope.node_id"),
        ({**RULE, "surprise": 1}, 422, "surprise"),
        ({**RULE, "for_seconds": True}, 422, "for_seconds"),
        ({**RULE, "resolve_for_seconds": "5"}, 422, "resolve_for_seconds"),
        ({**RULE, "threshold": False}, 422, "threshold"),
        ({**RULE, "threshold": "80"}, 422, "threshold"),  # a number, as the schema says
    ],
)
def test_bad_rules_are_refused_and_nothing_changes(shared_api, body, status, field):
    before = rules_of(shared_api)
    r = shared_api.request("POST", "/alert-rules", json=body)
    assert r.status_code == status, r.text
    err = error_of(r)
    assert field in err["message"] or err["details"].get("field") == field, err
    assert rules_of(shared_api) == before


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_numbers_are_refused(shared_api, literal):
    """Not JSON, yet Python's json reads them (and json.dumps writes them): an infinite
    hysteresis was stored, and listed back as null, which the response schema does not allow."""
    before = rules_of(shared_api)
    body = '{"name": "inf", "metric": "cpu_percent", "op": ">", "threshold": 5, "hysteresis": %s}'
    r = shared_api.request(
        "POST",
        "/alert-rules",
        content=body % literal,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert error_of(r)["message"].startswith("hysteresis:")
    assert rules_of(shared_api) == before


def test_rule_crud_and_patch_keeps_what_is_not_given(shared_api):
    rule = shared_api.post("/alert-rules", RULE, expect=201)
    assert rule["scope"] == {} and rule["hysteresis"] == 4.0 and rule["resolve_for_seconds"] == 5.0
    patched = shared_api.request(
        "PATCH", f"/alert-rules/{rule['id']}", json={"threshold": 90, "enabled": False}, expect=200
    ).json()
    assert patched["threshold"] == 90 and not patched["enabled"] and patched["name"] == "hot"
    bad = shared_api.request("PATCH", f"/alert-rules/{rule['id']}", json={"metric": "state"})
    assert bad.status_code == 422 and error_of(bad)["details"]["field"] == "op"
    # What schemathesis found (ST201): `false` was read as 0.0 and the patch went through.
    bad = shared_api.request(
        "PATCH", f"/alert-rules/{rule['id']}", json={"resolve_for_seconds": False}
    )
    assert bad.status_code == 422
    assert error_of(bad)["message"] == "resolve_for_seconds: must be a JSON number"
    assert shared_api.get(f"/alert-rules/{rule['id']}") == patched
    assert shared_api.get(f"/alert-rules/{rule['id']}") == patched
    shared_api.request("DELETE", f"/alert-rules/{rule['id']}", expect=204)
    assert shared_api.request("GET", f"/alert-rules/{rule['id']}").status_code == 404


def test_null_puts_what_has_a_default_back_to_it(shared_api):
    rule = shared_api.post(
        "/alert-rules",
        {
            **RULE,
            "name": "defaults",
            "scope": {"system_id": shared_api.post("/systems", {"name": "nulls"})["id"]},
            "webhook_url": "http://127.0.0.1:9/hook",
            "hysteresis": 1,
            "resolve_for_seconds": 60,
        },
        expect=201,
    )
    body = {"scope": None, "webhook_url": None, "hysteresis": None, "resolve_for_seconds": None}
    out = shared_api.request("PATCH", f"/alert-rules/{rule['id']}", json=body, expect=200).json()
    assert (out["scope"], out["webhook_url"]) == ({}, None)
    assert (out["hysteresis"], out["resolve_for_seconds"]) == (4.0, 5.0)  # 5 % of 80; max(5, 5)
    shared_api.request("DELETE", f"/alert-rules/{rule['id']}", expect=204)


def test_the_built_in_node_offline_rule_is_there(shared_api):
    builtin = shared_api.get("/alert-rules/node-offline")
    assert (builtin["metric"], builtin["op"], builtin["threshold"]) == (
        "node_status",
        "==",
        "offline",
    )


def test_alert_queries_refuse_bad_filters(shared_api):
    for params, field in (({"state": "angry"}, "state"), ({"since": "yesterday"}, "since")):
        r = shared_api.request("GET", "/alerts", params=params)
        assert r.status_code == 422 and field in error_of(r)["message"]
    assert shared_api.get("/alerts", params={"since": "2020-01-01T00:00:00Z"}) is not None
    r = shared_api.request("POST", "/alerts/nope/ack")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_silences_validate_and_expire(shared_api):
    for body, field in (
        ({"matcher": {}, "duration_seconds": 60}, "matcher"),
        ({"matcher": {"node_id": "x"}}, "ends_at"),
        (
            {
                "matcher": {"node_id": "x"},
                "duration_seconds": 60,
                "ends_at": "2099-01-01T00:00:00Z",
            },
            "ends_at",
        ),
        ({"matcher": {"node_id": "x"}, "ends_at": "2001-01-01T00:00:00Z"}, "ends_at"),
        ({"matcher": {"node_id": "x"}, "ends_at": "soon"}, "ends_at"),
        ({"matcher": {"colour": "red"}, "duration_seconds": 60}, "colour"),
    ):
        before = shared_api.get("/silences", params={"all": True})
        r = shared_api.request("POST", "/silences", json=body)
        assert r.status_code == 422 and field in error_of(r)["message"], (body, r.text)
        assert shared_api.get("/silences", params={"all": True}) == before
    silence = shared_api.post(
        "/silences",
        {"matcher": {"node_id": "n1"}, "duration_seconds": 600, "comment": "maintenance"},
        expect=201,
    )
    assert silence["active"] and silence["comment"] == "maintenance"
    assert silence["id"] in [s["id"] for s in shared_api.get("/silences")]
    shared_api.request("DELETE", f"/silences/{silence['id']}", expect=204)
    assert silence["id"] not in [s["id"] for s in shared_api.get("/silences")]
    assert not shared_api.get(f"/silences/{silence['id']}")["active"]


def test_metrics_queries_check_ids_and_windows(shared_api):
    for path in ("/nodes/nope/metrics", "/instances/nope/metrics"):
        r = shared_api.request("GET", path)
        assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = shared_api.request("GET", "/nodes/x/metrics", params={"seconds": 0})
    assert r.status_code == 422 and "seconds" in error_of(r)["message"]


def test_prometheus_page_needs_a_user_token_and_parses(shared_master, shared_api):
    r = httpx.get(shared_master.url + "/metrics")
    assert r.status_code == 401 and error_of(r)["code"] == "unauthenticated"
    shared_api.post(
        "/users", {"username": "prom", "password": "viewer-pass-2", "role": "viewer"}, expect=201
    )
    viewer = Api.login(shared_master.url, "prom", "viewer-pass-2")
    r = httpx.get(
        shared_master.url + "/metrics", headers={"Authorization": f"Bearer {viewer.token}"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    for name in (
        "gdos_node_up",
        "gdos_master_connected_agents",
        "gdos_master_metrics_ingest_rate",
        "gdos_master_event_subscribers",
        "gdos_master_event_queue_depth",
        "gdos_master_webhook_queue_depth",
        "gdos_alerts_firing",
        "process_resident_memory_bytes",
    ):
        assert name in names, name


def test_metrics_public_flag_opens_the_page(master_factory):
    open_master = master_factory("open", extra=["--metrics-public"])
    r = httpx.get(open_master.url + "/metrics")
    assert r.status_code == 200 and "gdos_master_connected_agents 0" in r.text


def test_agents_feed_only_their_own_instances(shared_master, shared_api, tmp_path):
    """Two simulated agents over the real protocol: each one's rows land in its own
    instances' series; rows naming another node's instance are dropped and counted."""
    api = shared_api
    api.upload(build_package(tmp_path / "p", name="simsvc"))
    system = api.post("/systems", {"name": "simsys"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "svc", "package": "simsvc"})

    async def scenario() -> tuple[str, str]:
        names = ["sim-0", "sim-1"]
        async with connected_agents(
            shared_master.url, shared_master.join_token, names, interval=0.5
        ) as agents:
            mine = await asyncio.to_thread(
                api.post, "/instances", {"module_id": module["id"], "node_id": agents[0].node_id}
            )
            await asyncio.to_thread(
                wait_for, lambda: api.get(f"/instances/{mine['id']}")["state"] == "stopped"
            )
            await asyncio.to_thread(api.post, f"/instances/{mine['id']}/start")
            await asyncio.to_thread(
                wait_for, lambda: api.get(f"/instances/{mine['id']}")["state"] == "running"
            )
            # The second agent claims the first one's instance: not its own, so dropped.
            agents[1].instances[mine["id"]] = SimInstance(mine["id"], rss=1 << 20)
            await asyncio.sleep(2.5)
            return mine["id"], agents[1].node_id

    iid, other_node = asyncio.run(scenario())
    samples = api.get(f"/instances/{iid}/metrics", params={"seconds": 30})["samples"]
    assert samples and all(s["rss_bytes"] == 48 << 20 for s in samples)  # none of the impostor's
    page = httpx.get(
        shared_master.url + "/metrics", headers={"Authorization": f"Bearer {api.token}"}
    ).text
    rejected = [
        line
        for line in page.splitlines()
        if line.startswith("gdos_master_metrics_rejected_samples_total")
    ]
    assert float(rejected[0].split()[-1]) >= 1
    assert api.get(f"/nodes/{other_node}/metrics", params={"seconds": 30})["samples"]
