"""Logs end to end: a service that writes 50 MB stays within its rotation budget on disk; the
API lists and tails only declared logs and refuses traversal and symlink swaps; following a
log over the event stream starts and stops with the subscription."""

import os
import time
from pathlib import Path

import pytest

from tests.support import EventStream, build_package, wait_for

pytestmark = pytest.mark.slow

MAX_BYTES, BACKUPS = 1 << 20, 3
CHATTY = """\
import os, sys, time
os.makedirs("../logs", exist_ok=True)
line = ("x" * 1023 + "\\n").encode()
for _ in range(50 * 1024):          # 50 MiB to stdout, as fast as it goes
    sys.stdout.buffer.write(line)
sys.stdout.flush()
with open("../logs/app.log", "ab") as app:  # its own log, 5 MiB, kept open in append mode
    for _ in range(5 * 1024):
        app.write(line)
    app.flush()
    print("finished", file=sys.stderr, flush=True)
    n = 0
    while True:
        n += 1
        sys.stdout.write("alive %d\\n" % n)
        sys.stdout.flush()
        time.sleep(0.2)
"""


def on_disk(path: Path) -> int:
    files = [path, *(Path(f"{path}.{i}") for i in range(1, 20))]
    return sum(p.stat().st_size for p in files if p.exists())


def test_logs(master, api, agent_factory, tmp_path):
    log_root = tmp_path / "var-log"  # the agent's --log-roots: absolute logs only in there
    log_root.mkdir()
    agent = agent_factory(master, extra=["--log-roots", str(log_root)])
    node_id = agent.start_and_wait(api)
    system_log = log_root / "system.log"
    system_log.write_text("declared absolute log\n")
    manifest = {
        "log_paths": {"App Log": "logs/app.log", "System": str(system_log)},
        "log_rotate": {"max_bytes": MAX_BYTES, "backups": BACKUPS, "log_paths": True},
    }
    api.upload(build_package(tmp_path / "p", name="chatty", manifest=manifest, script=CHATTY))
    sid = api.post("/systems", {"name": "logs"})["id"]
    mid = api.post(f"/systems/{sid}/modules", {"name": "talker", "package": "chatty"})["id"]
    iid = api.post("/instances", {"module_id": mid, "node_id": node_id}, expect=202)["id"]
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deployed")
    api.post(f"/instances/{iid}/start", expect=202)

    def tail(name: str, **params) -> str:
        return api.request("GET", f"/instances/{iid}/logs/{name}", params=params, expect=200).text

    wait_for(lambda: "finished" in tail("stderr"), timeout=120, what="50 MB written")
    stdout = agent.work_dir / iid / "logs" / "stdout.log"
    app_log = agent.work_dir / iid / "current" / "logs" / "app.log"
    budget = MAX_BYTES * (BACKUPS + 1) + (64 << 10)
    wait_for(
        lambda: on_disk(stdout) <= budget and on_disk(app_log) <= budget,
        timeout=30,
        what="rotation caught up",
    )
    print(f"\nstdout on disk: {on_disk(stdout)} bytes, app.log: {on_disk(app_log)} bytes")
    assert Path(f"{stdout}.{BACKUPS}").exists() and not Path(f"{stdout}.{BACKUPS + 1}").exists()
    assert Path(f"{app_log}.1").exists()
    wait_for(lambda: "alive" in tail("stdout"), what="the service keeps writing after rotation")

    listed = api.get(f"/instances/{iid}/logs")
    assert [x["name"] for x in listed] == ["stdout", "stderr", "App Log", "System"]
    assert all(x["exists"] and x.get("error") is None for x in listed)
    assert listed[3]["path"] == str(system_log) and listed[3]["size"] == system_log.stat().st_size
    assert tail("System") == "declared absolute log\n"
    r = api.request("GET", f"/instances/{iid}/logs/stdout", params={"tail_bytes": 10}, expect=200)
    size = int(r.headers["x-log-size"])
    assert len(r.content) == min(10, size) and r.headers["content-type"].startswith("text/plain")
    assert int(r.headers["x-log-offset"]) + len(r.content) == size
    assert (
        api.request(
            "GET", f"/instances/{iid}/logs/stdout", params={"tail_bytes": 2 << 20}
        ).status_code
        == 422
    )

    # Traversal: only declared names; nothing else on the node is readable.
    credential = agent.work_dir / "agent-credential.json"
    for name in (
        "%2E%2E",
        "..%2F..%2Fagent-credential.json",
        "%2Fetc%2Fpasswd",
        "stdout.log",
        "app.log",
    ):
        r = api.request("GET", f"/instances/{iid}/logs/{name}")
        assert r.status_code == 404, (name, r.text)
        assert "node_secret" not in r.text and "root:" not in r.text
    # A declared log swapped for a symlink to a secret is refused, on every read.
    stderr = agent.work_dir / iid / "logs" / "stderr.log"
    stderr.unlink()
    stderr.symlink_to(credential)
    r = api.request("GET", f"/instances/{iid}/logs/stderr")
    assert r.status_code == 403 and "symbolic link" in r.json()["error"]["message"]
    assert "node_secret" not in r.text
    assert "symbolic link" in api.get(f"/instances/{iid}/logs")[1]["error"]
    logs_dir = agent.work_dir / iid / "current" / "logs"
    os.rename(logs_dir, logs_dir.with_name("real-logs"))
    (tmp_path / "decoy").mkdir()
    (tmp_path / "decoy" / "app.log").write_text("decoy\n")
    logs_dir.symlink_to(tmp_path / "decoy")
    r = api.request("GET", f"/instances/{iid}/logs/App%20Log")
    assert r.status_code == 403 and "decoy" not in r.text
    assert api.request("GET", "/instances/nope/logs").status_code == 404

    # An absolute log outside the log roots (an /etc/shadow) fails the deploy, naming the flag.
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$hash:::\n")
    api.upload(
        build_package(tmp_path / "p2", name="nosy", manifest={"log_paths": {"Shadow": str(secret)}})
    )
    nosy = api.post(f"/systems/{sid}/modules", {"name": "nosy", "package": "nosy"})["id"]
    bad = api.post("/instances", {"module_id": nosy, "node_id": node_id}, expect=202)["id"]
    failed = wait_for(
        lambda: (i := api.get(f"/instances/{bad}"))["state"] == "failed" and i, what="refused"
    )
    assert "outside the folders this agent serves logs from" in failed["last_error"]
    assert "--log-roots" in failed["last_error"] and not (agent.work_dir / bad).exists()

    # Follow over the event stream while subscribed; only subscribers get the chunks.
    events = EventStream(master.url, api.token)
    bystander = EventStream(master.url, api.token)
    events.send({"subscribe": [f"log:{iid}:stdout"]})
    wait_for(
        lambda: any("alive" in (e.get("data") or "") for e in events.topic("log")),
        what="live log chunks",
    )
    chunk = events.topic("log")[-1]
    assert chunk["instance_id"] == iid and chunk["name"] == "stdout"
    events.send({"unsubscribe": [f"log:{iid}:stdout"]})
    time.sleep(1.5)
    seen = len(events.topic("log"))
    time.sleep(1.5)
    assert len(events.topic("log")) == seen  # the agent was told to stop
    assert bystander.topic("log") == []
    # A subscription to an undeclared name is answered with an error, not data.
    events.send({"subscribe": [f"log:{iid}:../../agent-credential.json"]})
    wait_for(lambda: any(e.get("error") for e in events.topic("log")), what="refusal")
    events.close()
    bystander.close()
    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
