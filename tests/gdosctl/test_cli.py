"""gdosctl against a real master and agent, run as a subprocess: JSON output and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.gdosctl.ctl import Ctl
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

PS_FIELDS = {"id", "name", "system", "node", "state", "health", "version"}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def test_logins_contexts_and_the_exit_codes_of_failures(world, tmp_path):
    ctl = world.ctl
    bad = ctl(
        "login", world.master.url, "-u", "admin", "--password-stdin", input="wrong\n", expect=4
    )
    assert bad.err == "Error: wrong username or password\n"
    contexts = ctl("context", "ls", "-o", "json").json()
    assert [c["current"] for c in contexts] == [True] and contexts[0]["master"] == world.master.url
    status = ctl("status", "-o", "json").json()
    assert status["nodes"]["online"] >= 1 and status["version"]
    nodes = {n["id"]: n for n in ctl("nodes", "-o", "json").json()}
    assert nodes[world.node_id]["hostname"] == world.hostname
    assert nodes[world.node_id]["status"] == "online"

    # CI: no file at all, the environment only.
    ci = Ctl(tmp_path / "ci-home")
    token = world.api.token
    assert ci("ps", "-o", "json", GDOS_MASTER=world.master.url, GDOS_TOKEN=token).json() is not None
    gone = ci("ps", GDOS_MASTER=f"http://127.0.0.1:{free_port()}", GDOS_TOKEN=token, expect=5)
    assert "cannot reach the master" in gone.err
    refused = ci("ps", GDOS_MASTER=world.master.url, GDOS_TOKEN="gdu_bogus", expect=4)
    assert f"gdosctl login {world.master.url}" in refused.err
    assert ci("ps", expect=4).err.startswith("Error: not logged in")

    # An expired token: said before any call, with how to log in again.
    old = Ctl(tmp_path / "old-home")
    cfg_dir = tmp_path / "old-home" / "gdos"
    cfg_dir.mkdir(parents=True)
    data = yaml.safe_load((world.ctl.home / "gdos" / "config.yaml").read_text())
    for ctx in data["contexts"].values():
        ctx["expires_at"] = "2001-01-01T00:00:00Z"
    (cfg_dir / "config.yaml").write_text(yaml.safe_dump(data))
    expired = old("ps", expect=4)
    assert (
        expired.err.strip()
        == f"Error: your session expired; run `gdosctl login {world.master.url}`"
    )


def test_packages_systems_modules_and_instances(world):
    ctl, host = world.ctl, world.hostname
    pkg_name = unique("pk")
    pushed = ctl("push", str(world.package(pkg_name)), "-o", "json").json()
    assert (pushed["name"], pushed["version"]) == (pkg_name, "1.0.0")
    again = ctl("push", str(world.package(pkg_name)), expect=1)
    assert "already exists" in again.err
    assert [p["version"] for p in ctl("packages", pkg_name, "-o", "json").json()] == ["1.0.0"]

    sys_a, sys_b = unique("sa"), unique("sb")
    made = ctl("system", "create", sys_a, "-d", "first", "-o", "json").json()
    assert made["name"] == sys_a
    ctl("system", "create", sys_b)
    mod = ctl("module", "add", sys_a, "svc", "-p", pkg_name, "--env", "A=1", "-o", "json").json()
    assert mod["env"] == {"A": "1"} and mod["version"] is None
    assert ctl("module", "set", f"{sys_a}/svc", "--env", "A=2", "-o", "json").json()["env"] == {
        "A": "2"
    }
    ctl("module", "add", sys_b, "svc", "-p", pkg_name)

    deployed = ctl("deploy", f"{sys_a}/svc", "--node", host, "--start", "-o", "json").json()
    assert [d["state"] for d in deployed] == ["running"]
    ctl("deploy", f"{sys_b}/svc", "--node", world.node_id[:6])
    rows = ctl("ps", "--system", sys_a, "-o", "json").json()
    assert len(rows) == 1 and set(rows[0]) >= PS_FIELDS
    row = rows[0]
    assert (row["name"], row["system"], row["node"], row["state"], row["version"]) == (
        "svc-1",
        sys_a,
        host,
        "running",
        "1.0.0",
    )
    # The master filters by name (one name, two systems).
    named = world.api.get("/instances", params={"name": "svc-1"})
    assert {i["system_id"] for i in named} >= {row["system_id"]} and all(
        i["name"] == "svc-1" for i in named
    )

    ambiguous = ctl("stop", "svc-1", expect=2)
    assert f"{sys_a}/svc-1" in ambiguous.err and f"{sys_b}/svc-1" in ambiguous.err
    assert ctl("stop", "no-such-instance", expect=3).err.startswith("Error: no instance")
    assert "stop done" in ctl("stop", f"{sys_a}/svc-1").out
    assert ctl("ps", "--system", sys_a, "-o", "json").json()[0]["state"] == "stopped"
    ctl("start", row["id"][:8])
    first = ctl("instance", "show", row["id"], "-o", "json").json()
    ctl("restart", f"{sys_a}/svc-1")
    after = ctl("instance", "show", row["id"], "-o", "json").json()
    assert after["state"] == "running" and after["started_at"] != first["started_at"]

    assert "serving on" in ctl("logs", f"{sys_a}/svc-1", "--tail", "5").out
    listed = ctl("logs", f"{sys_a}/svc-1", "--list").out
    assert "stdout" in listed and "stderr" in listed

    shown = ctl("system", "show", sys_a, "-o", "json").json()
    assert [m["name"] for m in shown["modules"]] == ["svc"] and shown["instances"][0][
        "node"
    ] == host
    stopped = ctl("system", "stop", sys_a)
    assert "succeeded" in stopped.out
    started = ctl("system", "start", sys_a)
    assert "svc-1 (level 1): done" in started.err and "succeeded" in started.out
    ops = ctl("operations", "--system", sys_a, "-o", "json").json()
    assert [o["kind"] for o in ops] == ["start", "stop"] and ops[0]["state"] == "succeeded"
    one = ctl("operations", "show", ops[0]["id"][:6], "-o", "json").json()
    assert one["steps"][0]["name"] == "svc-1"
    assert sys_a in ctl("systems").out

    for system in (sys_a, sys_b):
        ctl("destroy", f"{system}/svc-1", "--yes")
        ctl("module", "rm", f"{system}/svc")
        ctl("system", "rm", system, "--yes")
    assert not [s for s in ctl("systems", "-o", "json").json() if s["name"] in (sys_a, sys_b)]


def test_logs_follow_prints_a_line_written_after_it_started(world):
    ctl, system = world.ctl, unique("lf")
    pkg = unique("lfp")
    ctl("push", str(world.package(pkg)))
    ctl("system", "create", system)
    ctl("module", "add", system, "svc", "-p", pkg)
    (inst,) = ctl(
        "deploy", f"{system}/svc", "--node", world.hostname, "--start", "-o", "json"
    ).json()
    follower = subprocess.Popen(
        ctl.argv("logs", inst["id"], "-f"),
        env=ctl.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    )
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True
    )
    reader.start()
    try:
        wait_for(lambda: any("serving on" in line for line in seen), timeout=60, what="the tail")
        time.sleep(1.0)  # following: the agent streams what is appended from now on
        log = world.agent.work_dir / inst["id"] / "logs" / "stdout.log"
        with open(log, "a") as f:
            f.write("a line written after logs -f started\n")
        wait_for(
            lambda: "a line written after logs -f started\n" in seen,
            timeout=30,
            what="the new line",
        )
        assert sum("serving on" in line for line in seen) == 1  # the tail once, no repeat
    finally:
        follower.send_signal(signal.SIGINT)
        stopped_by_sigint(follower)
    ctl("destroy", inst["id"], "--yes")


def as_in_a_terminal() -> None:
    """In the child: SIGINT as a foreground command in a terminal has it (a suite run in the
    background of a non-interactive shell, or under nohup, passes SIGINT on as ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stopped_by_sigint(proc: subprocess.Popen[str]) -> None:
    """Wait for a process sent SIGINT; if it outlives it, fail naming its signal masks and
    what it wrote on stderr (a SIGINT inherited as ignored, or a hang on the way out)."""
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        masks = [line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn"))]
        proc.kill()
        proc.wait(10)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(
            f"still running 30 s after SIGINT; {masks}; stderr: {err[-2000:]}"
        ) from None


def shop_file(system: str, pkg: str, host: str, count: int = 2, env: str = "info") -> str:
    nodes = "".join(f"      - node: {host}\n" for _ in range(count))
    return (
        f"system: {system}\n"
        "description: kept in git\n"
        "modules:\n"
        f'  - name: web\n    package: {pkg}\n    version: "1.0.0"\n    start_order: 1\n'
        f"    env: {{LOG_LEVEL: {env}}}\n    instances:\n{nodes}"
    )


def test_apply_is_idempotent_puts_drift_back_and_export_applies_unchanged(world, tmp_path):
    ctl, api, system, pkg = world.ctl, world.api, unique("ap"), unique("app")
    ctl("push", str(world.package(pkg)))
    path = tmp_path / "shop.yaml"
    path.write_text(shop_file(system, pkg, world.hostname))

    dry = ctl("apply", "-f", str(path), "--dry-run", "-o", "json").json()
    assert dry["applied"] is False and len(dry["created"]) == 4  # system, module, 2 instances
    assert not [s for s in api.get("/systems") if s["name"] == system], "a dry run changed nothing"
    first = ctl("apply", "-f", str(path), "--start")
    assert "created:" in first.out and "system " + system in first.out
    assert {r["state"] for r in ctl("ps", "--system", system, "-o", "json").json()} == {"running"}
    again = ctl("apply", "-f", str(path), "-o", "json").json()
    assert (again["created"], again["changed"], again["rolled_out"], again["removed"]) == (
        [],
        [],
        [],
        [],
    )

    # Drift: an env changed by hand, an instance destroyed, one added.
    ctl("module", "set", f"{system}/web", "--env", "LOG_LEVEL=debug")
    ctl("destroy", f"{system}/web-2", "--yes")
    ctl("deploy", f"{system}/web", "--node", world.hostname)
    ctl("deploy", f"{system}/web", "--node", world.hostname)
    plan = ctl("apply", "-f", str(path), "--dry-run", "-o", "json").json()
    assert len(plan["changed"]) == 1 and "LOG_LEVEL" in plan["changed"][0]
    assert len(plan["removed"]) == 1 and plan["created"] == []
    ctl("apply", "-f", str(path))
    assert ctl("apply", "-f", str(path), "-o", "json").json()["removed"] == []
    detail = next(s for s in api.get("/systems") if s["name"] == system)
    assert api.get(f"/systems/{detail['id']}")["modules"][0]["env"] == {"LOG_LEVEL": "info"}

    # export -> apply: nothing to change; the file means what ours means.
    exported = ctl("export", system).out
    assert yaml.safe_load(exported)["modules"][0]["instances"] == [{"node": world.hostname}] * 2
    unchanged = ctl("apply", "-f", "-", "-o", "json", input=exported).json()
    assert (unchanged["created"], unchanged["changed"], unchanged["removed"]) == ([], [], [])

    # Fewer instances in the file: the surplus goes; a removed module goes with its instances.
    path.write_text(shop_file(system, pkg, world.hostname, count=1))
    assert len(ctl("apply", "-f", str(path), "-o", "json").json()["removed"]) == 1
    path.write_text(f"system: {system}\ndescription: kept in git\nmodules: []\n")
    gone = ctl("apply", "-f", str(path), "-o", "json").json()
    assert gone["removed"][-1] == "module web"
    assert api.get(f"/systems/{detail['id']}")["instances"] == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"system: {system}\nmodule: []\n")
    assert (
        "unknown field module (did you mean modules?)" in ctl("apply", "-f", str(bad), expect=2).err
    )
    ctl("system", "rm", system, "--yes")


def big_package(path, size: int) -> None:
    """A valid package with a large stored (uncompressed) file."""
    with zipfile.ZipFile(path, "w") as zf:
        manifest = {"name": path.stem, "version": "1.0.0", "entrypoint": "bin/run"}
        zf.writestr("service.json", json.dumps(manifest))
        info = zipfile.ZipInfo("bin/run")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\nexec sleep 1000\n")
        with zf.open(zipfile.ZipInfo("data.bin"), "w", force_zip64=True) as out:
            block = os.urandom(1 << 20)
            for _ in range(size >> 20):
                out.write(block)


def test_an_interrupted_push_resumes_where_it_stopped(world, tmp_path):
    ctl, api = world.ctl, world.api
    path = tmp_path / f"{unique('big')}.zip"
    big_package(path, 256 << 20)
    pushing = subprocess.Popen(
        ctl.argv("push", str(path)), env=ctl.environ(), stderr=subprocess.PIPE, text=True
    )
    try:
        for line in pushing.stderr:  # progress goes to stderr
            if "(10%)" in line or "(20%)" in line:
                break  # a tenth has gone: cut it here
    finally:
        pushing.kill()
        pushing.wait(30)
    upload = next(
        u for u in api.get("/packages/uploads") if u["metadata"].get("filename") == path.name
    )
    assert upload["state"] == "receiving" and 0 < upload["offset"] < upload["length"], upload
    resumed = ctl("push", str(path), "-o", "json")
    assert "resuming the upload at" in resumed.err
    assert resumed.json()["name"] == path.stem
    mine = [u for u in api.get("/packages/uploads") if u["metadata"].get("filename") == path.name]
    assert len(mine) == 1 and mine[0]["state"] == "complete", "one upload, resumed, not a second"


def test_watching_administering_and_adopting(world, tmp_path):
    ctl, api, system, pkg = world.ctl, world.api, unique("wa"), unique("wap")
    ctl("push", str(world.package(pkg)))
    path = tmp_path / "s.yaml"
    path.write_text(shop_file(system, pkg, world.hostname, count=1))
    ctl("apply", "-f", str(path), "--start")

    frame = ctl("top", "--system", system, "-n", "1").out
    assert "web-1" in frame and "running" in frame
    logins = ctl("audit", "--action", "login", "--limit", "5", "-o", "json").json()
    assert logins and {a["action"] for a in logins} == {"login"}
    assert "the audit trail is intact" in ctl("audit", "verify").out
    assert isinstance(ctl("alerts", "-o", "json").json(), list)

    # An alert that fires, acknowledged by id prefix; a silence.
    sys_id = next(s for s in api.get("/systems") if s["name"] == system)["id"]
    rule = api.post(
        "/alert-rules",
        {
            "name": unique("r"),
            "metric": "state",
            "op": "==",
            "threshold": "exited",
            "scope": {"system_id": sys_id},
        },
    )
    (inst,) = ctl("ps", "--system", system, "-o", "json").json()
    os.kill(inst["pid"], signal.SIGKILL)
    firing = wait_for(
        lambda: [
            a
            for a in ctl("alerts", "--state", "firing", "-o", "json").json()
            if a["rule_id"] == rule["id"]
        ],
        timeout=60,
        what="the alert",
    )
    ctl("alert", "ack", firing[0]["id"][:8])
    assert api.get(f"/alerts/{firing[0]['id']}")["acked_by"] == "admin"
    assert "silence" in ctl("alert", "silence", "--rule", rule["id"], "--for", "10m").out
    assert any(r["id"] == rule["id"] for r in ctl("alert", "rules", "-o", "json").json())

    made = ctl("backup", "create", "-o", "json").json()
    assert made["id"] in [b["id"] for b in ctl("backup", "ls", "-o", "json").json()]
    ctl("backup", "download", made["id"][:10], str(tmp_path / "b.db"))
    assert (tmp_path / "b.db").read_bytes()[:16] == b"SQLite format 3\x00"

    user = unique("u")
    ctl("user", "add", user, "--role", "viewer", "--password-stdin", input="a long password\n")
    assert user in [u["username"] for u in ctl("user", "ls", "-o", "json").json()]
    viewer = Ctl(tmp_path / "viewer")
    viewer("login", world.master.url, "-u", user, "--password-stdin", input="a long password\n")
    refused = viewer("stop", f"{system}/web-1", expect=4)
    assert "operator role" in refused.err
    ctl("user", "rm", user)
    token = ctl("join-token", "--ttl", "1h", "--max-uses", "1", "-o", "json").json()
    assert token["token"].startswith("gdj_") and token["max_uses"] == 1

    marker = unique("adoptme")
    proc = subprocess.Popen(["python3", "-c", "import time; time.sleep(300)", marker])
    try:
        # A pattern that its own text, in this gdosctl's command line, does not match.
        pattern = rf"sleep\(300\) {marker}"
        adopted = ctl(
            "adopt", system, "legacy", "--node", world.hostname, "--cmdline", pattern, "-o", "json"
        ).json()
        assert adopted["adopted"] is True and adopted["pid"] == proc.pid
        exported = yaml.safe_load(ctl("export", system).out)
        assert [m["name"] for m in exported["modules"]] == ["web"]
        ctl("destroy", f"{system}/legacy", "--yes")
        assert proc.poll() is None, "destroying an adopted instance forgets it, never kills it"
    finally:
        proc.kill()
        proc.wait()
    path.write_text(f"system: {system}\nmodules: []\n")
    ctl("apply", "-f", str(path))
    ctl("system", "rm", system, "--yes")


def test_completion_scripts_and_names(world):
    ctl = world.ctl
    for shell in ("bash", "zsh", "fish"):
        script = ctl("completion", shell).out
        assert "_GDOSCTL_COMPLETE" in script, shell
    ctl("system", "create", "completeme")
    try:
        out = ctl(
            _GDOSCTL_COMPLETE="bash_complete", COMP_WORDS="gdosctl system show comp", COMP_CWORD="3"
        ).out
        assert "plain,completeme" in out.splitlines()
        opts = ctl(
            _GDOSCTL_COMPLETE="bash_complete", COMP_WORDS="gdosctl logs x --fo", COMP_CWORD="3"
        ).out
        assert "plain,--follow" in opts.splitlines()
    finally:
        ctl("system", "rm", "completeme", "--yes")


def test_unreachable_port_exit_code_without_any_login(tmp_path):
    """Login to nothing: exit 5, one line."""
    ctl = Ctl(tmp_path / "h")
    out = ctl(
        "login",
        f"http://127.0.0.1:{free_port()}",
        "-u",
        "a",
        "--password-stdin",
        input="x\n",
        expect=5,
    )
    assert out.err.count("\n") == 1 and "cannot reach the master" in out.err
