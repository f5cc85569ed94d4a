"""Restore through the API under a running master with a real agent and real services: the state
goes back, the agent reconnects, and an instance the restored state does not know is reported
and kept running, never killed."""

import threading

import psutil
import pytest

from tests.support import build_package, free_port, port_open, processes_with_env, wait_for

pytestmark = pytest.mark.slow


def deploy(api, node_id: str, system: str, port: int) -> str:
    sid = api.post("/systems", {"name": system})["id"]
    body = {"name": "web", "package": "hello", "args": ["--port", str(port)]}
    module = api.post(f"/systems/{sid}/modules", body)
    iid = api.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)["id"]
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deployed")
    return iid


def start(api, iid: str) -> int:
    api.post(f"/instances/{iid}/start", expect=202)
    return wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i["pid"],
        what=f"{iid} running",
    )


def test_restore_through_the_api(master, api, agent_factory, tmp_path):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    port_a, port_b = free_port(), free_port()
    api.upload(build_package(tmp_path / "pkgs"))
    a = deploy(api, node_id, "before", port_a)
    pid_a = start(api, a)
    backup = api.post("/backups", expect=201)

    b = deploy(api, node_id, "after", port_b)
    pid_b = start(api, b)
    wait_for(lambda: port_open(port_b), what="service b")
    assert {s["name"] for s in api.get("/systems")} == {"before", "after"}

    # Requests arriving during the restore wait at the gate instead of failing.
    statuses = []
    stop = threading.Event()

    def reads() -> None:
        while not stop.is_set():
            statuses.append(api.request("GET", "/systems").status_code)

    reader = threading.Thread(target=reads)
    reader.start()
    try:
        out = api.post(f"/backups/{backup['id']}/restore", expect=200)
    finally:
        stop.set()
        reader.join(30)
    assert out["restored"] == backup["id"] and out["safety_backup"]
    assert statuses and set(statuses) == {200}

    # The state as of the backup, served at once, without a restart.
    assert [s["name"] for s in api.get("/systems")] == ["before"]
    assert api.request("GET", f"/instances/{b}").status_code == 404

    # The agent reconnects and reconciles: a runs on, b is reported, not killed.
    node = wait_for(
        lambda: (
            (n := api.get(f"/nodes/{node_id}"))["status"] == "online"
            and n["unmanaged_instances"]
            and n
        ),
        what="agent back with its report",
    )
    assert node["unmanaged_instances"] == [b]
    inst_a = wait_for(
        lambda: (i := api.get(f"/instances/{a}"))["state"] == "running" and i, what="a running"
    )
    assert inst_a["pid"] == pid_a
    assert psutil.pid_exists(pid_b) and processes_with_env("GDOS_INSTANCE_ID", b) == [pid_b]
    assert port_open(port_a) and port_open(port_b)
    assert "runs instances the master does not know" in master.tail(200)

    rows = api.get("/audit", params={"action": "unmanaged_instances"})
    assert rows and rows[0]["detail"]["instances"] == [b] and rows[0]["result"] == "reported"
    restored = api.get("/audit", params={"action": "restore_backup"})
    assert restored[0]["actor"] == "admin" and restored[0]["result"] == "ok"
    assert restored[0]["detail"]["safety_backup"] == out["safety_backup"]
    assert api.get("/audit/verify")["ok"] is True

    # The safety copy undoes the restore: b is managed again, still the same process.
    kinds = {x["id"]: x["kind"] for x in api.get("/backups")}
    assert kinds[out["safety_backup"]] == "pre-restore"
    api.post(f"/backups/{out['safety_backup']}/restore", expect=200)
    assert {s["name"] for s in api.get("/systems")} == {"before", "after"}
    wait_for(
        lambda: (
            (n := api.get(f"/nodes/{node_id}"))["status"] == "online"
            and not n["unmanaged_instances"]
        ),
        what="b managed again",
    )
    inst_b = wait_for(
        lambda: (i := api.get(f"/instances/{b}"))["state"] == "running" and i, what="b running"
    )
    assert inst_b["pid"] == pid_b
    api.post(f"/instances/{b}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{b}")["state"] == "stopped", what="b stopped")
    assert not port_open(port_b)
