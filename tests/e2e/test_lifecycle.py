"""The foundation end to end: real master, real agent subprocess, a real service package."""

import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import (
    EventStream,
    build_package,
    free_port,
    port_open,
    processes_with_env,
    wait_for,
)

pytestmark = pytest.mark.slow


def deploy_hello(api, node_id: str, tmp_path: Path, port: int, name: str = "demo") -> dict:
    pkg = build_package(
        tmp_path / "pkgs", manifest={"args": ["--port", str(port)], "env": {"GREETING": "hi there"}}
    )
    api.upload(pkg)
    system = api.post("/systems", {"name": name})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"})
    inst = api.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)
    assert inst["state"] == "deploying"
    wait_for(lambda: api.get(f"/instances/{inst['id']}")["state"] == "stopped", what="deploy")
    return inst


def test_deploy_start_stop_destroy(master, api, agent_factory, tmp_path):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    node = api.get(f"/nodes/{node_id}")
    assert (
        node["os"] == "linux"
        and node["cpu_count"] >= 1
        and node["mem_total"] > 0
        and node["hostname"]
    )
    events = EventStream(master.url, api.token)
    port = free_port()
    inst = deploy_hello(api, node_id, tmp_path, port)
    iid = inst["id"]
    inst_dir = agent.work_dir / iid
    assert (inst_dir / "current" / "bin" / "run").stat().st_mode & 0o100

    t0 = time.monotonic()
    api.post(f"/instances/{iid}/start", expect=202)
    running = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i, what="running"
    )
    start_to_running = time.monotonic() - t0
    wait_for(lambda: port_open(port), what="service port")
    print(f"\nstart call -> running: {start_to_running * 1000:.0f} ms")
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "hi there\n"
    pid = running["pid"]
    assert psutil.Process(pid).is_running()
    assert processes_with_env("GDOS_INSTANCE_ID", iid) == [pid]

    # Starting again is a no-op: never a second process.
    api.post(f"/instances/{iid}/start", expect=202)
    time.sleep(0.5)
    assert processes_with_env("GDOS_INSTANCE_ID", iid) == [pid]

    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
    assert not port_open(port)
    assert processes_with_env("GDOS_INSTANCE_ID", iid) == []
    assert (inst_dir / "logs" / "stdout.log").read_text().startswith("serving on")

    api.request("DELETE", f"/instances/{iid}", expect=202)
    wait_for(lambda: api.request("GET", f"/instances/{iid}").status_code == 404, what="destroyed")
    assert not inst_dir.exists()

    wait_for(lambda: "destroyed" in events.states_of(iid), what="destroyed event")
    seen = events.states_of(iid)
    events.close()
    for state in ("stopped", "starting", "running", "stopping", "destroying", "destroyed"):
        assert state in seen, (state, seen)
    assert seen.index("running") < seen.index("stopping") < seen.index("destroyed")


def test_agent_kill9_keeps_the_service_and_readopts_it(master, api, agent_factory, tmp_path):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    port = free_port()
    iid = deploy_hello(api, node_id, tmp_path, port)["id"]
    api.post(f"/instances/{iid}/start", expect=202)
    pid = wait_for(lambda: api.get(f"/instances/{iid}")["pid"], what="pid")
    wait_for(lambda: port_open(port), what="port")

    agent.kill9()
    wait_for(
        lambda: api.get(f"/nodes/{node_id}")["status"] == "offline", timeout=10, what="offline"
    )
    assert api.get(f"/instances/{iid}")["state"] == "unknown"
    assert port_open(port), "the service must outlive its agent"

    agent.start()  # no token needed any more: the credential is in the work dir
    wait_for(lambda: api.get(f"/nodes/{node_id}")["status"] == "online", what="online again")
    inst = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i, what="running"
    )
    assert inst["pid"] == pid
    assert processes_with_env("GDOS_INSTANCE_ID", iid) == [pid]
    assert "re-adopted" in agent.tail()

    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(
        lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped after re-adoption"
    )
    assert not port_open(port)


def test_process_that_exits_on_its_own_is_reported(master, api, agent_factory, tmp_path):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    pkg = build_package(
        tmp_path / "p", name="oneshot", script="import sys; print('bye'); sys.exit(3)\n"
    )
    api.upload(pkg)
    system = api.post("/systems", {"name": "s"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "job", "package": "oneshot"})
    iid = api.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)["id"]
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deploy")
    api.post(f"/instances/{iid}/start", expect=202)
    inst = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "exited" and i, what="exited"
    )
    assert inst["exit_code"] == 3
    assert "code 3" in inst["last_error"]


def test_deploy_to_offline_node_is_409(master, api, agent_factory, tmp_path):
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    api.upload(build_package(tmp_path / "p"))
    system = api.post("/systems", {"name": "s"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"})
    agent.stop()
    wait_for(lambda: api.get(f"/nodes/{node_id}")["status"] == "offline", what="offline")
    r = api.request("POST", "/instances", json={"module_id": module["id"], "node_id": node_id})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "node_offline"


def test_many_deploys_at_once_do_not_starve_the_master(master, api, agent_factory, tmp_path):
    """30 agents' worth of downloads in flight: the database pool must not run dry (a download
    holding a pooled connection while it streams once froze the whole master)."""
    import os

    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    api.upload(build_package(tmp_path / "p", name="bulky", files={"blob.bin": os.urandom(6 << 20)}))
    system = api.post("/systems", {"name": "many"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "b", "package": "bulky"})
    ids = [
        api.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)["id"]
        for _ in range(30)
    ]
    slowest = 0.0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        states = {
            i["id"]: i["state"] for i in api.get("/instances", params={"system_id": system["id"]})
        }
        slowest = max(slowest, time.monotonic() - t0)
        if all(states[i] == "stopped" for i in ids):
            break
        time.sleep(0.2)
    assert all(states[i] == "stopped" for i in ids), states
    assert slowest < 10, f"the API took {slowest:.1f} s to answer during the deploys"


def test_agent_restart_readopts_running_keeps_stopped_and_reports_the_dead(
    master, api, agent_factory, tmp_path
):
    """Killed agent, then: A kept running, B was stopped, C died while no agent watched, D had
    exited on its own before. The new agent re-adopts A with its PID and starts nothing."""
    agent = agent_factory(master)
    node_id = agent.start_and_wait(api)
    api.upload(build_package(tmp_path / "pkgs"))
    api.upload(build_package(tmp_path / "pkgs", name="oneshot", script="import sys; sys.exit(3)\n"))
    system = api.post("/systems", {"name": "mix"})
    ports = {name: free_port() for name in "abc"}
    ids = {}
    for name in "abcd":
        body = {"name": name, "package": "oneshot" if name == "d" else "hello"}
        if name in ports:
            body["args"] = ["--port", str(ports[name])]
        module = api.post(f"/systems/{system['id']}/modules", body)
        inst = api.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)
        ids[name] = inst["id"]
    for iid in ids.values():
        wait_for(lambda i=iid: api.get(f"/instances/{i}")["state"] == "stopped", what="deployed")
        api.post(f"/instances/{iid}/start", expect=202)
    pids = {
        n: wait_for(lambda i=ids[n]: api.get(f"/instances/{i}")["pid"], what=f"{n} pid")
        for n in "abc"
    }
    wait_for(lambda: all(port_open(ports[n]) for n in "abc"), what="ports")
    wait_for(lambda: api.get(f"/instances/{ids['d']}")["state"] == "exited", what="d exited")
    api.post(f"/instances/{ids['b']}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{ids['b']}")["state"] == "stopped", what="b stopped")

    agent.kill9()
    wait_for(lambda: api.get(f"/nodes/{node_id}")["status"] == "offline", what="offline")
    psutil.Process(pids["c"]).kill()  # dies while no agent watches
    wait_for(lambda: not port_open(ports["c"]), what="c gone")

    agent.start()
    wait_for(lambda: api.get(f"/nodes/{node_id}")["status"] == "online", what="online again")
    states = wait_for(
        lambda: (
            (s := {n: api.get(f"/instances/{i}") for n, i in ids.items()})["c"]["state"] == "exited"
            and s["a"]["state"] == "running"
            and s
        ),
        what="states after the restart",
    )
    assert states["a"]["pid"] == pids["a"]
    assert processes_with_env("GDOS_INSTANCE_ID", ids["a"]) == [pids["a"]]
    assert port_open(ports["a"])
    assert states["b"]["state"] == "stopped" and states["b"]["pid"] is None
    assert processes_with_env("GDOS_INSTANCE_ID", ids["b"]) == []
    assert not port_open(ports["b"])
    assert states["c"]["pid"] is None
    assert "ended while the agent was not running" in states["c"]["last_error"]
    assert processes_with_env("GDOS_INSTANCE_ID", ids["c"]) == []  # not started again
    assert (states["d"]["state"], states["d"]["exit_code"]) == ("exited", 3)
    assert "re-adopted" in agent.tail()
