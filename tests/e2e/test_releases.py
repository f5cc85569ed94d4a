"""Releases end to end (real master, real agents, real services): a canary rollout in batches
that keeps each instance's identity, per-instance settings and drift, a rollback from kept
releases that downloads nothing, and the history of both."""

import os
import signal

import pytest

from tests.e2e.release_support import (
    Fleet,
    fetches,
    finished,
    package,
    read_events,
    steps_by_instance,
)
from tests.support import EventStream, wait_for

pytestmark = pytest.mark.slow


def test_a_canary_rollout_then_a_rollback_keep_every_instance(master, api, agent_factory, tmp_path):
    agents = [agent_factory(master, f"agent-{i}") for i in range(2)]
    nodes = [a.start_and_wait(api) for a in agents]
    events = tmp_path / "events"
    for v in ("1.0.0", "1.0.1"):
        pkg = package(tmp_path / "pkgs", v, events, shared_paths=["uploads/"], restart="always")
        api.upload(pkg)
    fleet = Fleet.make(api, nodes, per_node=2, version="1.0.0")
    ids = fleet.instances
    assert sorted(i["index"] for i in fleet.all()) == [1, 2, 3, 4]
    fleet.start()
    assert sorted(fleet.answers().values()) == ["1.0.0 1", "1.0.0 2", "1.0.0 3", "1.0.0 4"]
    rule = api.post(
        "/alert-rules",
        {
            "name": "one",
            "metric": "state",
            "op": "==",
            "threshold": "failed",
            "scope": {"instance_id": ids[0]},
        },
    )

    # A module change that affects what runs answers which instances now differ.
    r = api.request("PATCH", f"/modules/{fleet.module_id}", json={"env": {"COLOR": "blue"}})
    assert r.status_code == 200 and sorted(r.json()["drifted"]) == sorted(ids)
    assert all(i["drift"] for i in fleet.all())

    os.kill(fleet.get(ids[0])["pid"], signal.SIGKILL)  # a crash, restarted by its policy
    wait_for(lambda: fleet.get(ids[0])["restarts"] == 1, 60, 0.1, "the restart")
    fleet.wait(lambda i: i["health"] == "healthy" and i["state"] == "running", "restarted")
    wait_for(
        lambda: api.get(f"/instances/{ids[0]}/metrics", params={"seconds": 60})["samples"],
        60,
        0.5,
        "metrics of the first version",
    )
    stream = EventStream(master.url, api.token or "")
    started = fleet.rollout(version="1.0.1", batch_size=2, canary=1, min_ready_seconds=0.5)
    assert started["kind"] == "rollout" and started["module_id"] == fleet.module_id
    op_id = started["operation_id"]
    wait_for(lambda: api.get(f"/operations/{op_id}")["paused"], 120, 0.2, "the canary's pause")
    op = api.get(f"/operations/{op_id}")
    assert op["state"] == "running" and op["rollout"]["phase"] == "paused"
    done = [st for st in op["steps"] if st["state"] == "done"]
    assert [st["batch"] for st in done] == [1] and len(done) == 1
    assert api.get(f"/modules/{fleet.module_id}")["version"] == "1.0.0", "not until it succeeds"
    r = api.request("POST", f"/modules/{fleet.module_id}/rollout", json={"version": "1.0.1"})
    assert r.status_code == 409 and r.json()["error"]["details"]["operation_id"] == op_id
    r = api.request("POST", f"/systems/{fleet.system_id}/stop")
    assert r.status_code == 409, "a batch stop never supersedes a rollout silently"
    api.post(f"/operations/{op_id}/resume")
    op = finished(api, op_id)
    assert op["state"] == "succeeded", op
    assert sorted(st["batch"] for st in op["steps"]) == [1, 2, 2, 3]
    assert api.get(f"/modules/{fleet.module_id}")["version"] == "1.0.1"
    # Consoles learn the module's new version from the stream, as after a PATCH.
    wait_for(
        lambda: any(
            m["id"] == fleet.module_id and m["version"] == "1.0.1" for m in stream.topic("module")
        ),
        30,
        0.1,
        "the module event of the rollout",
    )
    stream.close()
    after = fleet.all()
    assert [i["id"] for i in after] == ids, "the same instances"
    assert [i["restarts"] for i in after] == [1, 0, 0, 0], "its restart count too"
    assert {(i["version"], i["previous_version"], i["drift"]) for i in after} == {
        ("1.0.1", "1.0.0", False)
    }
    assert sorted(fleet.answers().values()) == ["1.0.1 1", "1.0.1 2", "1.0.1 3", "1.0.1 4"]
    stdout = api.request("GET", f"/instances/{ids[0]}/logs/stdout").text
    assert "serving 1.0.0" in stdout and "serving 1.0.1" in stdout, "one log across versions"
    assert api.get(f"/alert-rules/{rule['id']}")["scope"] == {"instance_id": ids[0]}

    def series() -> list[dict]:
        return api.get(f"/instances/{ids[0]}/metrics", params={"seconds": 300})["samples"]

    # One series across versions: samples from before the rollout, and (within a few samples)
    # from after it, under the same instance.
    wait_for(lambda: series()[-1]["ts"] > op["created_at"], 30, 0.5, "a sample after the rollout")
    assert series()[0]["ts"] < op["created_at"], "one series across versions"
    starts = [e for e in read_events(events) if e[1] == "start" and e[2] == "1.0.1"]
    assert sorted(name for name, _, _ in starts) == sorted(i["name"] for i in after)

    # Back: from the kept releases, nothing fetched.
    fetched = [fetches(a.log_path, "1.0.0") for a in agents]
    back = api.post(f"/modules/{fleet.module_id}/rollback", expect=202)
    assert back["kind"] == "rollback"
    op = finished(api, back["operation_id"])
    assert op["state"] == "succeeded", op
    assert sorted(fleet.answers().values()) == ["1.0.0 1", "1.0.0 2", "1.0.0 3", "1.0.0 4"]
    assert [fetches(a.log_path, "1.0.0") for a in agents] == fetched, "no download"
    assert {i["version"] for i in fleet.all()} == {"1.0.0"}
    for agent in agents:  # keep_releases 2: both kept, nothing else on disk
        for inst_dir in agent.work_dir.glob("*/releases"):
            assert len(list(inst_dir.iterdir())) == 2, list(inst_dir.iterdir())

    history = api.get(f"/modules/{fleet.module_id}/releases")
    assert [(h["kind"], h["from_version"], h["to_version"], h["state"]) for h in history] == [
        ("rollback", "1.0.1", "1.0.0", "succeeded"),
        ("rollout", "1.0.0", "1.0.1", "succeeded"),
    ]
    assert {x["instance_id"] for x in history[1]["instances"]} == set(ids)
    assert all(h["actor"] == "admin" for h in history)
    audit = api.get("/audit", params={"limit": 200})
    actions = [a["action"] for a in audit]
    for action in ("rollout_module", "rollback_module", "rollout_finished", "rollback_finished"):
        assert action in actions, action


def test_a_failed_batch_rolls_back_what_it_touched_and_leaves_the_rest_alone(
    master, api, agent_factory, tmp_path
):
    node = agent_factory(master).start_and_wait(api)
    events = tmp_path / "events"
    pkgs = tmp_path / "pkgs"
    api.upload(package(pkgs, "1.0.0", events))
    api.upload(package(pkgs, "2.0.0", events, "--crash"))  # exits 3 at start
    api.upload(package(pkgs, "3.0.0", events, "--never-ready"))  # never answers its probe
    fleet = Fleet.make(api, [node], per_node=4, version="1.0.0")
    fleet.start()
    pids = fleet.pids()

    op = finished(api, fleet.rollout(version="2.0.0", batch_size=2)["operation_id"])
    assert op["state"] == "failed"
    steps = steps_by_instance(op)
    touched = [i for i in fleet.instances if steps[i]["batch"] == 1]
    untouched = [i for i in fleet.instances if i not in touched]
    assert {steps[i]["state"] for i in touched} == {"rolled_back"}
    assert {steps[i]["state"] for i in untouched} == {"skipped"}
    failed_name = next(st["name"] for st in op["steps"] if "exited" in (st["error"] or ""))
    assert failed_name in op["error"] and "exited with code 3" in op["error"], op["error"]
    assert "rolled back 2 instance(s) to 1.0.0" in op["error"]
    fleet.wait(lambda i: i["state"] == "running" and i["health"] == "healthy", "back, healthy")
    now = fleet.pids()
    assert all(now[i] == pids[i] for i in untouched), "the untouched were never stopped"
    assert all(now[i] != pids[i] for i in touched)
    assert {i["version"] for i in fleet.all()} == {"1.0.0"}
    assert set(fleet.answers().values()) == {f"1.0.0 {n}" for n in (1, 2, 3, 4)}
    assert api.get(f"/modules/{fleet.module_id}")["version"] == "1.0.0"

    # A version whose health check never passes: the batch times out, naming the last probe.
    body = {"version": "3.0.0", "batch_size": "50%", "ready_timeout": 3}
    op = finished(api, fleet.rollout(**body)["operation_id"])
    assert op["state"] == "failed" and "did not become healthy within 3 s" in op["error"]
    assert "last probe: tcp 127.0.0.1:" in op["error"], op["error"]
    fleet.wait(lambda i: i["version"] == "1.0.0" and i["health"] == "healthy", "back again")

    # A version whose start cannot even begin (a variable its environment lacks): the switch
    # happened, its start failed, and the rollback takes it back.
    api.upload(package(pkgs, "4.0.0", events, "--extra", "${NOPE}"))
    op = finished(api, fleet.rollout(version="4.0.0", batch_size=1)["operation_id"])
    assert op["state"] == "failed" and "${NOPE}" in op["error"], op["error"]
    first = fleet.get(fleet.instances[0])
    assert (first["version"], first["previous_version"]) == ("1.0.0", "4.0.0"), first
    fleet.wait(lambda i: i["version"] == "1.0.0" and i["health"] == "healthy", "back once more")

    # A canary cancelled while paused: what it touched goes back, nothing else moved.
    pids = fleet.pids()
    api.upload(package(pkgs, "1.1.0", events))
    op_id = fleet.rollout(version="1.1.0", canary=1, min_ready_seconds=0.2)["operation_id"]
    wait_for(lambda: api.get(f"/operations/{op_id}")["paused"], 120, 0.2, "the canary's pause")
    r = api.request("POST", f"/operations/{op_id}/resume")
    assert r.status_code == 200
    r = api.request("POST", f"/operations/{op_id}/cancel")
    assert r.status_code == 200, r.text
    op = finished(api, op_id)
    assert op["state"] == "failed" and op["error"].startswith("cancelled by admin"), op["error"]
    moved = [st["instance_id"] for st in op["steps"] if st["state"] == "rolled_back"]
    assert moved and {i["version"] for i in fleet.all()} == {"1.0.0"}
    now = fleet.pids()
    assert all(now[i] == pids[i] for i in fleet.instances if i not in moved)
    r = api.request("POST", f"/operations/{op_id}/cancel")
    assert r.status_code == 409, "it has ended"
    r = api.request("POST", f"/operations/{op_id}/resume")
    assert r.status_code == 409

    # A system's rollout: one operation over its modules, in each module's history.
    r = api.request(
        "POST", f"/systems/{fleet.system_id}/rollout", json={"versions": {"nope": None}}
    )
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    body = {"versions": {"svc": "1.1.0"}, "batch_size": "50%", "min_ready_seconds": 0.2}
    started = api.post(f"/systems/{fleet.system_id}/rollout", body, expect=202)
    assert started["kind"] == "rollout" and started["module_id"] is None
    op = finished(api, started["operation_id"])
    assert op["state"] == "succeeded", op
    assert api.get(f"/modules/{fleet.module_id}")["version"] == "1.1.0"
    assert {i["version"] for i in fleet.all()} == {"1.1.0"}
    history = api.get(f"/modules/{fleet.module_id}/releases")
    assert history[0]["operation_id"] == op["id"] and history[0]["to_version"] == "1.1.0"
