"""Releases under faults (real master, real agents, real services): an agent killed -9 while it
unpacks and while it switches, a master killed -9 mid-rollout, a node gone mid-rollout, a full
disk while unpacking, and bad input refused before anything moves."""

import os
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.e2e.release_support import (
    Fleet,
    finished,
    package,
    processes_of,
    read_events,
    state_record,
    steps_by_instance,
)
from tests.support import kill_services_under, wait_for

pytestmark = pytest.mark.slow


def big_files() -> dict[str, str | bytes]:
    """Some 40 MiB that compress well enough for a quick download, slow enough to unpack."""
    blob = bytearray(40 << 20)
    blob[::64] = os.urandom(len(blob[::64]))
    return {"blob": bytes(blob), **{f"many/{i}.txt": f"file {i}\n" * 50 for i in range(1500)}}


def release_dirs(work: Path, iid: str) -> list[str]:
    return sorted(p.name for p in (work / iid / "releases").iterdir())


def test_an_agent_killed_while_it_unpacks_or_switches_comes_back_on_one_release(
    master, api, agent_factory, tmp_path
):
    agent = agent_factory(master)
    node = agent.start_and_wait(api)
    events = tmp_path / "events"
    pkgs = tmp_path / "pkgs"
    api.upload(package(pkgs, "1.0.0", events, "--stop-after", "3"))  # slow to stop
    api.upload(package(pkgs, "2.0.0", events, files=big_files()))
    fleet = Fleet.make(api, [node], per_node=1, version="1.0.0")
    fleet.start()
    [iid] = fleet.instances
    pid = fleet.get(iid)["pid"]
    work = agent.work_dir
    before = release_dirs(work, iid)

    # Killed during the unpack: the running release is untouched, the half-unpacked one gone.
    api.post(f"/instances/{iid}/upgrade", {"version": "2.0.0"}, expect=202)
    wait_for(
        lambda: any(n.endswith(".tmp") for n in release_dirs(work, iid)), 60, 0.005, "unpacking"
    )
    agent.kill9()
    assert psutil.pid_exists(pid), "the service outlives its agent"
    agent.start_and_wait(api)
    assert release_dirs(work, iid) == before, "nothing of 2.0.0 is left"
    assert os.readlink(work / iid / "current") == f"releases/{before[0]}"
    inst = fleet.get(iid)
    assert (inst["pid"], inst["version"], inst["state"]) == (pid, "1.0.0", "running")
    assert "upgrade failed" in (inst["last_error"] or "")

    # Killed while the switch stops the service: it comes back wholly on the release its state
    # file names (the old one: the switch had not happened), pointer and process agreeing.
    api.post(f"/instances/{iid}/upgrade", {"version": "2.0.0"}, expect=202)
    wait_for(lambda: fleet.get(iid)["state"] == "stopping", 120, 0.02, "the switch's stop")
    agent.kill9()
    wait_for(lambda: not psutil.pid_exists(pid), 10, 0.05, "the old process to end")
    agent.start_and_wait(api)
    fleet.wait(lambda i: i["state"] == "running", "running again (the master re-drives it)")
    record = state_record(work, iid)
    current = os.readlink(work / iid / "current")
    assert current == f"releases/{record['release']}"
    [proc] = processes_of(iid)
    assert Path(proc.cwd()).parent == (work / iid / current).resolve()
    assert fleet.get(iid)["version"] == record["release"].split("-")[0]
    assert not any(n.endswith((".tmp", ".zip")) for n in release_dirs(work, iid))

    # And the upgrade, asked again, goes through.
    api.post(f"/instances/{iid}/upgrade", {"version": "2.0.0"}, expect=202)
    fleet.wait(lambda i: i["version"] == "2.0.0" and i["health"] == "healthy", "2.0.0 runs")
    assert fleet.get(iid)["previous_version"] == "1.0.0"


def test_a_master_killed_mid_rollout_resumes_it_without_starting_anything_twice(
    master, api, agent_factory, tmp_path
):
    nodes = [agent_factory(master, f"agent-{i}").start_and_wait(api) for i in range(2)]
    events = tmp_path / "events"
    pkgs = tmp_path / "pkgs"
    api.upload(package(pkgs, "1.0.0", events))
    api.upload(package(pkgs, "1.1.0", events, "--ready-after", "1.5"))
    fleet = Fleet.make(api, nodes, per_node=2, version="1.0.0")
    fleet.start()
    op_id = fleet.rollout(version="1.1.0", batch_size=1)["operation_id"]
    wait_for(
        lambda: any(
            st["state"] == "waiting_health" and st["batch"] == 2
            for st in api.get(f"/operations/{op_id}")["steps"]
        ),
        120,
        0.02,
        "the second batch in progress",
    )
    master.kill9()
    api.close()
    master.launch()
    api = master.api()
    fleet.api = api
    op = finished(api, op_id)
    assert op["state"] == "succeeded", op
    assert op["resumed"] >= 1
    for inst in fleet.all():
        assert inst["version"] == "1.1.0" and inst["state"] == "running"
        assert len(processes_of(inst["id"])) == 1, "one process each"
    starts = [name for name, kind, v in read_events(events) if kind == "start" and v == "1.1.0"]
    assert sorted(starts) == sorted(i["name"] for i in fleet.all()), "each started once"


def test_a_node_gone_mid_rollout_fails_its_step_and_the_rest_goes_back(
    master, api, agent_factory, tmp_path
):
    agents = [agent_factory(master, f"agent-{i}") for i in range(2)]
    nodes = [a.start_and_wait(api) for a in agents]
    events = tmp_path / "events"
    pkgs = tmp_path / "pkgs"
    api.upload(package(pkgs, "1.0.0", events))
    api.upload(package(pkgs, "1.1.0", events, "--ready-after", "1"))
    fleet = Fleet.make(api, nodes, per_node=2, version="1.0.0")
    fleet.start()
    op_id = fleet.rollout(version="1.1.0", batch_size=1, pause_seconds=2)["operation_id"]
    wait_for(
        lambda: (
            steps_by_instance(api.get(f"/operations/{op_id}"))[fleet.instances[0]]["state"]
            == "done"
        ),
        120,
        0.05,
        "the first batch",
    )
    agents[1].stop()  # the node of the second batch's instance goes away
    op = finished(api, op_id)
    assert op["state"] == "failed"
    gone = fleet.instances[1]
    assert steps_by_instance(op)[gone]["state"] == "failed"
    assert "offline" in op["error"] and fleet.get(gone)["name"] in op["error"], op["error"]
    first = fleet.get(fleet.instances[0])
    assert steps_by_instance(op)[first["id"]]["state"] == "rolled_back"
    wait_for(lambda: fleet.get(first["id"])["version"] == "1.0.0", 60, 0.2, "rolled back")


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    kill_services_under(mnt)  # before the unmount: after it their folders no longer match
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_while_unpacking_leaves_the_running_release(
    master, api, agent_factory, small_disk, tmp_path
):
    agent = agent_factory(master, str(small_disk.relative_to(tmp_path) / "agent"))
    node = agent.start_and_wait(api)
    events = tmp_path / "events"
    pkgs = tmp_path / "pkgs"
    api.upload(package(pkgs, "1.0.0", events))
    api.upload(package(pkgs, "2.0.0", events, files=big_files()))  # 40 MiB on a 24 MiB disk
    fleet = Fleet.make(api, [node], per_node=2, version="1.0.0")
    fleet.start()
    pids = fleet.pids()
    op = finished(api, fleet.rollout(version="2.0.0", batch_size=2)["operation_id"])
    assert op["state"] == "failed" and "storage_full" in op["error"], op["error"]
    assert "disk of this node is full" in op["error"]
    assert {st["state"] for st in op["steps"]} <= {"failed", "skipped"}, "nothing switched"
    assert fleet.pids() == pids and {i["version"] for i in fleet.all()} == {"1.0.0"}
    for iid in fleet.instances:
        assert len(release_dirs(agent.work_dir, iid)) == 1
    api.post(f"/instances/{fleet.instances[0]}/upgrade", {"version": "2.0.0"}, expect=202)
    wait_for(
        lambda: "storage_full" in (fleet.get(fleet.instances[0])["last_error"] or ""),
        60,
        0.2,
        "the upgrade's error",
    )
    assert fleet.pids() == pids


def test_bad_input_is_refused_before_anything_moves(master, api, agent_factory, tmp_path):
    node = agent_factory(master).start_and_wait(api)
    events = tmp_path / "events"
    pkgs = tmp_path / "pkgs"
    for n, shared in enumerate((["../etc"], ["/var/lib/x"])):
        r = api.upload(package(pkgs / f"bad{n}", "9.0.0", events, shared_paths=shared), 422)
        assert "shared_paths" in r.text, r.text
    api.upload(package(pkgs, "1.0.0", events))
    fleet = Fleet.make(api, [node], per_node=1, version="1.0.0")
    [iid] = fleet.instances
    api.upload(package(pkgs, "1.0.1-win", events, os="windows"))
    count = len(api.get("/operations"))
    r = fleet.rollout(expect=404, version="9.9.9")
    assert r["error"]["code"] == "not_found" and "9.9.9" in r["error"]["message"]
    r = fleet.rollout(expect=422, version="1.0.1-win")
    assert r["error"]["code"] == "os_mismatch" and "windows" in r["error"]["message"]
    r = api.post(f"/modules/{fleet.module_id}/rollback", expect=409)
    assert "no previous version" in r["error"]["message"]
    r = api.post(f"/instances/{iid}/upgrade", {"version": "9.9.9"}, expect=404)
    assert len(api.get("/operations")) == count, "no operation was created"
    for body in ({"env": {"A=B": "x"}}, {"args": "x"}, {"user": "-root"}, {"extra": 1}):
        r = api.request("PATCH", f"/instances/{iid}", json=body)
        assert r.status_code == 422, (body, r.text)
    r = api.request("POST", "/operations/nope/resume")
    assert r.status_code == 404
    # Each fits, but the instance's entries over its module's would not fit one start.
    big = {f"M{n}": "x" * 120_000 for n in range(5)}
    api.request("PATCH", f"/modules/{fleet.module_id}", json={"env": big}).raise_for_status()
    r = api.request(
        "PATCH", f"/instances/{iid}", json={"env": {k.lower(): v for k, v in big.items()}}
    )
    assert r.status_code == 422 and "1 MiB" in r.json()["error"]["message"], r.text
    api.request("PATCH", f"/modules/{fleet.module_id}", json={"env": {}}).raise_for_status()

    # A setting of its own: drift until the next start, which applies it.
    fleet.start()
    env = {"PORT": str(fleet.ports[iid]), "GREETING": "hi"}  # its env, whole
    r = api.request("PATCH", f"/instances/{iid}", json={"env": env, "args": None})
    assert r.status_code == 200 and r.json()["drift"] and r.json()["settings"]["env"]["GREETING"]
    api.post(f"/instances/{iid}/restart", expect=202)
    wait_for(lambda: not fleet.get(iid)["drift"], 60, 0.2, "the restart to apply it")
    fleet.wait(lambda i: i["state"] == "running", "running")
    [proc] = processes_of(iid)
    assert proc.environ()["GREETING"] == "hi" and proc.environ()["GDOS_INSTANCE_INDEX"] == "1"
