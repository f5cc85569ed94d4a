"""A business system started level by level behind health gates, stopped in reverse, and a
level that never becomes healthy failing the climb (real master, two agents, real services)."""

import sys

import pytest

from tests.e2e.batch_support import (
    CHECK_BY_NAME,
    deploy_all,
    read_events,
    run_operation,
    service_package,
    system_with_modules,
)
from tests.support import EventStream, free_port, port_open, processes_with_env

pytestmark = pytest.mark.slow


def upload_three_tiers(api, tmp_path, events, db_port, app_base, web_port, db_args=()):
    pkgs = tmp_path / "pkgs"
    api.upload(
        service_package(
            pkgs,
            "db",
            {
                "args": [
                    "--port",
                    str(db_port),
                    "--ready-after",
                    "0.8",
                    "--events",
                    str(events),
                    *db_args,
                ],
                "health": {"tcp": db_port, "ready_timeout": 30},
            },
        )
    )
    api.upload(
        service_package(
            pkgs,
            "app",
            {
                "args": [
                    "--port-base",
                    str(app_base),
                    "--ready-after",
                    "0.5",
                    "--events",
                    str(events),
                ],
                "health": {"command": [sys.executable, "bin/check.py", str(app_base)]},
            },
            files={"bin/check.py": CHECK_BY_NAME},
        )
    )
    api.upload(
        service_package(
            pkgs,
            "web",
            {
                "args": [
                    "--port",
                    str(web_port),
                    "--http",
                    "--ready-after",
                    "0.3",
                    "--events",
                    str(events),
                ],
                "health": {"http": f"http://127.0.0.1:{web_port}/"},
            },
        )
    )


def test_three_levels_start_in_order_behind_health_gates_and_stop_in_reverse(
    master, api, agent_factory, tmp_path
):
    node_a = agent_factory(master, "agent-a").start_and_wait(api)
    node_b = agent_factory(master, "agent-b").start_and_wait(api)
    events = tmp_path / "events.log"
    db_port, web_port, app_base = free_port(), free_port(), free_port() + 100
    upload_three_tiers(api, tmp_path, events, db_port, app_base, web_port)
    system_id, mods = system_with_modules(
        api,
        "shop",
        [
            {"name": "web", "package": "web", "start_order": 3},
            {"name": "db", "package": "db", "start_order": 1},
            {"name": "app", "package": "app", "start_order": 2},
        ],
    )
    deploy_all(
        api,
        [(mods["db"], node_a), (mods["app"], node_a), (mods["app"], node_b), (mods["web"], node_b)],
    )
    stream = EventStream(master.url, api.token)
    batched = EventStream(master.url, api.token)
    batched.send({"batch": True})  # opt in: one JSON array per burst of events

    op = run_operation(api, system_id, "start")
    assert op["state"] == "succeeded", op
    assert [(s["name"], s["level"], s["state"]) for s in op["steps"]] == [
        ("db-1", 1, "done"),
        ("app-1", 2, "done"),
        ("app-2", 2, "done"),
        ("web-1", 3, "done"),
    ]
    insts = {i["name"]: i for i in api.get(f"/instances?system_id={system_id}")}
    assert all(i["state"] == "running" and i["health"] == "healthy" for i in insts.values()), insts
    assert {insts["app-1"]["node_id"], insts["app-2"]["node_id"]} == {node_a, node_b}
    assert port_open(db_port) and port_open(web_port)

    # Each level started only once the level below was ready (times taken by the services).
    ev = read_events(events)
    db_ready = ev[("db-1", "ready")][0]
    apps_start = [ev[(n, "start")][0] for n in ("app-1", "app-2")]
    apps_ready = [ev[(n, "ready")][0] for n in ("app-1", "app-2")]
    web_start = ev[("web-1", "start")][0]
    assert ev[("db-1", "start")][0] < db_ready <= min(apps_start), ev
    assert max(apps_ready) <= web_start, ev
    # The master's started_at agrees.
    started = {n: i["started_at"] for n, i in insts.items()}
    assert (
        started["db-1"]
        < min(started["app-1"], started["app-2"])
        <= max(started["app-1"], started["app-2"])
        < started["web-1"]
    )
    # The operation was published live on the event stream, step by step.
    op_events = [e for e in stream.topic("operation") if e["id"] == op["id"]]
    assert op_events[0]["state"] == "running" and op_events[-1]["state"] == "succeeded"
    assert any(
        s["state"] == "waiting_health" for e in op_events for s in e["steps"] if s["name"] == "db-1"
    )
    with batched._lock:
        frames = list(batched.events)
    assert frames and all(isinstance(f, list) for f in frames)
    flat = [e for f in frames for e in f]
    assert [e["data"]["state"] for e in flat if e["topic"] == "operation"][-1] == "succeeded"
    assert len(flat) > len(frames), "several events share a frame"
    batched.close()

    # Starting a running system again is a no-op: the same processes, never a second one.
    pids = {n: i["pid"] for n, i in insts.items()}
    again = run_operation(api, system_id, "start")
    assert again["state"] == "succeeded"
    for n, i in insts.items():
        assert processes_with_env("GDOS_INSTANCE_ID", i["id"]) == [pids[n]], n
        assert api.get(f"/instances/{i['id']}")["pid"] == pids[n]

    stop = run_operation(api, system_id, "stop")
    assert stop["state"] == "succeeded", stop
    assert [s["name"] for s in stop["steps"] if s["level"] == 3] == ["web-1"]
    ev = read_events(events)
    web_stop = ev[("web-1", "stop")][0]
    apps_stop = [ev[(n, "stop")][0] for n in ("app-1", "app-2")]
    assert web_stop < min(apps_stop) and max(apps_stop) < ev[("db-1", "stop")][0], ev
    for i in api.get(f"/instances?system_id={system_id}"):
        assert i["state"] == "stopped" and i["desired_state"] == "stopped"
        assert processes_with_env("GDOS_INSTANCE_ID", i["id"]) == []
    listed = api.get(f"/operations?system_id={system_id}")
    assert [o["id"] for o in listed] == [stop["id"], again["id"], op["id"]]
    stream.close()


def test_a_level_that_never_becomes_healthy_fails_and_starts_nothing_above(
    master, api, agent_factory, tmp_path
):
    node = agent_factory(master).start_and_wait(api)
    events = tmp_path / "events.log"
    db_port, web_port, app_base = free_port(), free_port(), free_port() + 100
    upload_three_tiers(
        api, tmp_path, events, db_port, app_base, web_port, db_args=["--never-ready"]
    )
    system_id, mods = system_with_modules(
        api,
        "broken",
        [
            {"name": "db", "package": "db", "start_order": 1},
            {"name": "app", "package": "app", "start_order": 2},
        ],
    )
    db_id, app_id = deploy_all(api, [(mods["db"], node), (mods["app"], node)])

    op = run_operation(api, system_id, "start", {"ready_timeout": 2})
    assert op["state"] == "failed"
    assert "db-1 did not become healthy within 2 s" in op["error"], op["error"]
    assert f"tcp 127.0.0.1:{db_port}" in op["error"]  # the last probe says why
    steps = {s["name"]: s for s in op["steps"]}
    assert steps["db-1"]["state"] == "failed" and steps["db-1"]["error"] == op["error"]
    assert steps["app-1"]["state"] == "skipped" and steps["app-1"]["started_at"] is None
    app = api.get(f"/instances/{app_id}")
    assert app["state"] == "stopped" and app["desired_state"] == "stopped"
    assert processes_with_env("GDOS_INSTANCE_ID", app_id) == []
    assert ("app-1", "start") not in read_events(events)
    db = api.get(f"/instances/{db_id}")
    assert db["state"] == "running" and db["health"] == "unhealthy" and db["health_detail"]

    # The stop clears what the failed start left.
    assert run_operation(api, system_id, "stop")["state"] == "succeeded"
    assert processes_with_env("GDOS_INSTANCE_ID", db_id) == []

    # Bad input: clear errors, nothing created.
    r = api.request("POST", "/systems/nope/start")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.request("POST", f"/systems/{system_id}/start", json={"ready_timeout": -1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed"
    r = api.request("GET", "/operations/nope")
    assert r.status_code == 404 and "no operation nope" in r.json()["error"]["message"]
    assert len(api.get(f"/operations?system_id={system_id}")) == 2
