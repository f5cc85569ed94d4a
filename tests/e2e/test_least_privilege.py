"""Least privilege on the node, end to end (real master, real agent, real processes): a service
runs as its own user and the API shows it; adoption cannot reach the host; catastrophic
command-line patterns leave the agent's heartbeats flowing."""

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import Agent, build_package, kill_services_under, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root"),
]


@pytest.fixture(scope="module")
def api(shared_api):
    return shared_api


@pytest.fixture(scope="module")
def node(shared_master, api) -> Iterator[tuple[Agent, str]]:
    """One agent for the module, whose work dir the `nobody` account can reach (pytest's
    tmp_path sits in a 0700 folder)."""
    root = Path(tempfile.mkdtemp(prefix="gdos-lp-", dir="/tmp"))
    root.chmod(0o755)
    agent = Agent(shared_master, root / "agent")
    try:
        yield agent, agent.start_and_wait(api)
    finally:
        agent.stop()
        kill_services_under(root)
        shutil.rmtree(root, ignore_errors=True)


def test_a_service_runs_as_its_user_and_the_api_shows_it(api, node, tmp_path):
    agent, node_id = node
    script = {
        "bin/run": "#!/bin/sh\nexec sleep 600\n"
    }  # no Python: root's pyenv is closed to nobody
    api.upload(build_package(tmp_path, name="plain", files=script, manifest={"user": "nobody"}))
    sid = api.post("/systems", {"name": "lp"})["id"]
    mid = api.post(f"/systems/{sid}/modules", {"name": "plain", "package": "plain"})["id"]
    iid = api.post("/instances", {"module_id": mid, "node_id": node_id}, expect=202)["id"]
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deployed")
    assert api.get(f"/instances/{iid}")["user"] == "nobody"
    api.post(f"/instances/{iid}/start", expect=202)
    inst = wait_for(lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i)
    assert psutil.Process(inst["pid"]).uids().real == 65534 and inst["user"] == "nobody"
    data = agent.work_dir / iid / "data"
    assert data.stat().st_uid == 65534 and (agent.work_dir / iid / "current").stat().st_uid == 0

    # An adopted process shows the user it really runs as.
    tag = f"lp-{uuid.uuid4().hex[:8]}"
    outsider = subprocess.Popen(["/bin/sh", "-c", "sleep 600; :", tag], start_new_session=True)
    try:
        body = {"system_id": sid, "node_id": node_id, "strategy": "cmdline"}
        adopted = api.post("/instances/adopt", {**body, "name": "outsider", "cmdline_pattern": tag})
        assert adopted["user"] == "root" and adopted["pid"] == outsider.pid
        r = api.request(
            "POST",
            "/instances/adopt",
            json={**body, "name": "x", "cmdline_pattern": "nomatch", "user": "gdos-no-such-user"},
        )
        assert (
            r.status_code == 422 and "does not exist on this node" in r.json()["error"]["message"]
        )
    finally:
        outsider.kill()
        outsider.wait()


def test_adoption_cannot_reach_the_host(api, node, tmp_path):
    agent, node_id = node
    sid = api.post("/systems", {"name": "host"})["id"]
    body = {"system_id": sid, "node_id": node_id, "name": "init", "strategy": "pid_file"}
    cases = {
        "1": "PID 1",
        str(agent.pid): "this GDOS agent",
        str(os.getpid()): "ancestor of this GDOS agent",  # pytest started the agent
    }
    for pid, why in cases.items():
        pid_file = tmp_path / f"{pid}.pid"
        pid_file.write_text(pid)
        os.utime(pid_file, (time.time() + 3600,) * 2)
        r = api.request("POST", "/instances/adopt", json={**body, "pid_file": str(pid_file)})
        assert r.status_code == 403 and why in r.json()["error"]["message"], r.text
    by_name = {**body, "strategy": "process_name", "process_name": psutil.Process(1).name()}
    r = api.request(
        "POST", "/instances/adopt", json={k: v for k, v in by_name.items() if k != "pid_file"}
    )
    assert r.status_code == 403 and "PID 1" in r.json()["error"]["message"]
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:::\n")
    r = api.request("POST", "/instances/adopt", json={**body, "pid_file": str(secret)})
    assert r.status_code == 422 and "secret" not in r.text
    assert api.get(f"/instances?system_id={sid}") == []


def test_catastrophic_patterns_keep_the_heartbeats_flowing(api, node):
    """`(.|.)*z` against a 20,000-character command line: Python's re would take longer than
    the universe has existed, on the agent's event loop; RE2 answers at once."""
    _, node_id = node
    tag = f"long-{uuid.uuid4().hex[:8]}"
    long = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 600; :", tag, "x" * 20_000], start_new_session=True
    )
    seen: list[tuple[float, str, str | None]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            n = api.get(f"/nodes/{node_id}")
            seen.append((time.monotonic(), n["status"], n["last_seen"]))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    try:
        sid = api.post("/systems", {"name": "redos"})["id"]
        body = {"system_id": sid, "node_id": node_id, "strategy": "cmdline"}
        time.sleep(1.0)
        watcher.start()
        # Each names the tag, so that nothing else on the node can match.
        for n, tail in enumerate(["(.|.)*z", "(x+x+)+y", "(x|xx)+z", "(([a-z])+.)+[A-Z]([a-z])+$"]):
            r = api.request(
                "POST",
                "/instances/adopt",
                json={**body, "name": f"r{n}", "cmdline_pattern": f"{tag} {tail}"},
            )
            assert r.status_code == 422 and "no process" in r.json()["error"]["message"], r.text
        adopted = api.post(
            "/instances/adopt",
            {**body, "name": "found", "cmdline_pattern": f"{tag} (x+x+)+y|{tag}"},
        )
        assert adopted["pid"] == long.pid
        time.sleep(3.0)  # a few heartbeats after the patterns
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
        long.kill()
        long.wait()
    assert all(status == "online" for _, status, _ in seen)
    stamps = sorted({last for _, _, last in seen if last})
    assert len(stamps) >= 3, "last_seen kept moving while the patterns ran"
