"""Adopting processes the test started outside GDOS: by PID file, by name, by command line;
ambiguity and reused PIDs refused; adopted instances stopped, started, watched and forgotten."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from tests.support import Agent, kill_services_under, wait_for

pytestmark = pytest.mark.slow

# An outside service: writes its PID file, says when SIGTERM reaches it.
OUTSIDE = """\
import os, signal, sys, time
pid_file, tag = sys.argv[1], sys.argv[2]
def term(*_):
    open(pid_file + ".stopped", "a").write(f"{os.getpid()}\\n")
    os._exit(0)
signal.signal(signal.SIGTERM, term)
with open(pid_file + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\\n")
os.replace(pid_file + ".tmp", pid_file)
while True:
    time.sleep(3600)
"""


@pytest.fixture
def outside(tmp_path):
    """Start processes outside GDOS (own session, like a service started by hand)."""
    started: list[subprocess.Popen] = []

    def start(argv):
        p = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
    # Processes GDOS started from an adopted start_command are not our children.
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(tmp_path) in part for part in proc.info["cmdline"] or []):
            proc.kill()


@pytest.fixture(scope="module")
def shared_node(shared_master, shared_api, tmp_path_factory):
    """One agent for the module: adoption tests do not disturb each other."""
    root = tmp_path_factory.mktemp("adopt-agents")
    agent = Agent(shared_master, root / "agent")
    node = agent.start_and_wait(shared_api)
    yield node
    agent.stop()
    kill_services_under(root)


@pytest.fixture
def setup(shared_api, shared_node):
    system = shared_api.post("/systems", {"name": f"legacy-{uuid.uuid4().hex[:6]}"})
    return shared_api, shared_node, system["id"]


def adopt(api, body, expect=201):
    r = api.request("POST", "/instances/adopt", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def test_adopt_by_pid_file_then_stop_start_and_forget(setup, outside, tmp_path):
    api, node, system_id = setup
    script = tmp_path / "outside.py"
    script.write_text(OUTSIDE)
    pid_file = tmp_path / "svc.pid"
    tag = f"legacy-{uuid.uuid4().hex[:8]}"
    p = outside([sys.executable, str(script), str(pid_file), tag])
    wait_for(pid_file.exists, what="pid file")
    # A daemonising start needs a shell; GDOS never adds one, the operator asks for it.
    start_cmd = [
        "/bin/sh",
        "-c",
        f"'{sys.executable}' '{script}' '{pid_file}' {tag} >/dev/null 2>&1 &",
    ]
    inst = adopt(
        api,
        {
            "system_id": system_id,
            "node_id": node,
            "name": "legacy-svc",
            "strategy": "pid_file",
            "pid_file": str(pid_file),
            "start_command": start_cmd,
            "health": {"command": ["/bin/sh", "-c", f"test -f {pid_file}"]},
        },
    )
    iid = inst["id"]
    assert inst["adopted"] is True and inst["module_id"] is None and inst["version"] is None
    assert inst["state"] == "running" and inst["pid"] == p.pid
    wait_for(lambda: api.get(f"/instances/{iid}")["health"] == "healthy", what="healthy")

    # Stopped like a deployed one: SIGTERM to the tree (no stop command given).
    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
    assert p.wait(10) == 0
    assert (tmp_path / "svc.pid.stopped").read_text().split() == [str(p.pid)]

    # Started with its start command; the new process is found through the rewritten PID file.
    api.post(f"/instances/{iid}/start", expect=202)
    running = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i["pid"] and i,
        what="running again",
    )
    new_pid = running["pid"]
    assert new_pid != p.pid and int(pid_file.read_text()) == new_pid
    assert tag in " ".join(psutil.Process(new_pid).cmdline())

    # Destroying an adopted instance forgets it: the process and its files stay.
    api.request("DELETE", f"/instances/{iid}", expect=202)
    wait_for(lambda: api.request("GET", f"/instances/{iid}").status_code == 404, what="forgotten")
    assert psutil.Process(new_pid).is_running()
    assert pid_file.exists() and script.exists()
    psutil.Process(new_pid).kill()


def test_adopt_by_name_and_ambiguity(setup, outside, tmp_path):
    api, node, system_id = setup
    name = f"gd{uuid.uuid4().hex[:10]}"
    exe = tmp_path / name
    shutil.copy("/bin/sleep", exe)
    one = outside([str(exe), "600"])
    time.sleep(0.2)
    body = {
        "system_id": system_id,
        "node_id": node,
        "name": "sleepy",
        "strategy": "process_name",
        "process_name": name,
    }
    inst = adopt(api, body)
    assert inst["pid"] == one.pid and inst["state"] == "running"

    # Watched: an exit it did not ask for is noticed (as an event) and shown.
    one.kill()
    one.wait()
    gone = wait_for(
        lambda: (i := api.get(f"/instances/{inst['id']}"))["state"] == "exited" and i, what="exited"
    )
    assert gone["pid"] is None and "ended" in gone["last_error"]
    # It has no start command: GDOS says so instead of pretending.
    r = api.request("POST", f"/instances/{inst['id']}/start")
    assert r.status_code == 409 and "without a start command" in r.json()["error"]["message"]

    # Two processes with one name: refused, both listed, nothing created.
    twins = [outside([str(exe), "601"]), outside([str(exe), "602"])]
    time.sleep(0.2)
    r = api.request("POST", "/instances/adopt", json={**body, "name": "twin"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "ambiguous_match" and "2 processes" in err["message"]
    listed = {c["pid"]: c for c in err["details"]["candidates"]}
    assert set(listed) == {t.pid for t in twins}
    assert all(c["name"] == name and "60" in c["cmdline"] for c in listed.values())
    assert [i["name"] for i in api.get(f"/instances?system_id={system_id}")] == ["sleepy"]

    r = api.request(
        "POST", "/instances/adopt", json={**body, "name": "ghost", "process_name": "no-such-proc-x"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "process_not_found"


def test_adopt_by_cmdline_with_a_stop_command(setup, outside, tmp_path):
    api, node, system_id = setup
    tag = f"worker-{uuid.uuid4().hex[:8]}"
    p = outside([sys.executable, "-c", "import time; time.sleep(600)", "--queue", tag])
    time.sleep(0.2)
    marker = tmp_path / "stop-ran"
    inst = adopt(
        api,
        {
            "system_id": system_id,
            "node_id": node,
            "name": "worker",
            "strategy": "cmdline",
            "cmdline_pattern": rf"--queue {tag}$",
            # GDOS never adds a shell; an operator who wants one says so.
            "stop_command": ["/bin/sh", "-c", f"touch {marker}; kill {p.pid}"],
        },
    )
    assert inst["pid"] == p.pid
    api.post(f"/instances/{inst['id']}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{inst['id']}")["state"] == "stopped", what="stopped")
    assert marker.exists(), "the stop command ran"
    assert p.wait(10) == -15


def test_reused_pid_and_wrong_process_are_refused(setup, outside, tmp_path):
    api, node, system_id = setup
    unrelated = outside(["/bin/sleep", "600"])
    time.sleep(0.2)
    stale = tmp_path / "stale.pid"
    stale.write_text(f"{unrelated.pid}\n")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))  # the file predates the process now holding that PID
    body = {
        "system_id": system_id,
        "node_id": node,
        "name": "db",
        "strategy": "pid_file",
        "pid_file": str(stale),
    }
    r = api.request("POST", "/instances/adopt", json=body)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "process_identity_mismatch" and "reused" in err["message"]
    assert err["details"]["candidate"]["pid"] == unrelated.pid

    fresh = tmp_path / "fresh.pid"
    fresh.write_text(str(unrelated.pid))
    r = api.request(
        "POST",
        "/instances/adopt",
        json={**body, "pid_file": str(fresh), "process_name": "postgres"},
    )
    assert r.status_code == 409 and "not a process named 'postgres'" in r.json()["error"]["message"]

    r = api.request(
        "POST", "/instances/adopt", json={**body, "pid_file": str(tmp_path / "missing.pid")}
    )
    assert r.status_code == 422 and "does not exist" in r.json()["error"]["message"]
    # Bad bodies: the missing field named; a broken pattern; a restart policy without a way to start.
    r = api.request("POST", "/instances/adopt", json={**body, "pid_file": None})
    assert r.status_code == 422 and "needs 'pid_file'" in r.json()["error"]["message"]
    r = api.request(
        "POST", "/instances/adopt", json={**body, "strategy": "cmdline", "cmdline_pattern": "(["}
    )
    assert r.status_code == 422 and "regular expression" in r.json()["error"]["message"]
    r = api.request("POST", "/instances/adopt", json={**body, "restart": "always"})
    assert r.status_code == 422 and "start_command" in r.json()["error"]["message"]
    r = api.request("POST", "/instances/adopt", json={**body, "system_id": "nope"})
    assert r.status_code == 404

    assert api.get(f"/instances?system_id={system_id}") == []
    assert unrelated.poll() is None, "never signalled"
