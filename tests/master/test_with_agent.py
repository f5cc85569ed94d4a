"""`gdos-master --with-agent` (what ./run.sh and the console's embedded mode start)."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.support import (
    ADMIN_PASSWORD,
    Api,
    Proc,
    child_env,
    free_port,
    kill_services_under,
    wait_for,
)

pytestmark = pytest.mark.slow


def master_with_agent(tmp_path, port: int, *password: str) -> Proc:
    argv = [sys.executable, "-m", "master", "--with-agent", "--port", f"127.0.0.1:{port}"]
    argv += ["--data-dir", str(tmp_path / "d"), *password]
    proc = Proc("master+agent", argv, tmp_path / "out.log", tmp_path, child_env())
    proc.start()
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_local_agent_enrols_and_stops_with_the_master(tmp_path, sig):
    port = free_port()
    proc = master_with_agent(tmp_path, port, "--admin-password", ADMIN_PASSWORD)
    try:
        url = f"http://127.0.0.1:{port}"
        api = wait_for(lambda: Api.login(url), timeout=60, what="master up")
        wait_for(
            lambda: [n for n in api.get("/nodes") if n["status"] == "online"],
            timeout=60,
            what="local agent online",
        )
        children = psutil.Process(proc.pid).children()
        assert children, "the agent runs as the master's child"
        assert proc.popen is not None
        proc.popen.send_signal(sig)
        assert proc.popen.wait(30) == 0
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], "the local agent outlived its master"
    finally:
        proc.stop()


def _master_with_agent(tmp_path, port):
    argv = [
        sys.executable,
        "-m",
        "master",
        "--with-agent",
        "--port",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(tmp_path / "d"),
        "--admin-password",
        ADMIN_PASSWORD,
    ]
    log = open(tmp_path / "out.log", "ab")  # noqa: SIM115 - handed to the child
    # Its own process group, as in a terminal: Ctrl-C reaches the master and its agent.
    proc = subprocess.Popen(
        argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    api = wait_for(lambda: Api.login(url), timeout=60, what="master up")
    wait_for(
        lambda: [n for n in api.get("/nodes") if n["status"] == "online"],
        timeout=60,
        what="local agent online",
    )
    return proc, api


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-master", "agent-alone"])
def test_a_planned_stop_fires_no_node_offline_alert(tmp_path, how):
    """Ctrl-C of ./run.sh (the group), the console quitting its embedded master (SIGTERM to the
    master) and a service manager stopping the agent are planned: no node-offline alert. A
    killed agent still raises one (tests/e2e/test_monitoring.py)."""
    port = free_port()
    proc, api = _master_with_agent(tmp_path, port)
    try:
        if how == "agent-alone":
            [agent] = psutil.Process(proc.pid).children()
            agent.terminate()
            _gone, alive = psutil.wait_procs([agent], timeout=30)
            assert alive == []
            # The master starts its agent again: the node was offline in between, on purpose.
            wait_for(
                lambda: [c for c in psutil.Process(proc.pid).children() if c.pid != agent.pid],
                timeout=30,
                what="the agent started again",
            )
            wait_for(lambda: api.get("/nodes")[0]["status"] == "online", timeout=60, what="online")
            time.sleep(1.0)  # alerts are evaluated four times a second
        else:
            if how == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            proc, api = _master_with_agent(tmp_path, port)
        alerts = api.get("/alerts")
        assert [a for a in alerts if a["rule_id"] == "node-offline"] == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        kill_services_under(tmp_path)


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and the parent-death signal")
def test_the_local_agent_is_kept_and_never_orphaned_and_no_secret_is_in_argv(tmp_path):
    """The password and the join token reach the children by file; a dead agent is reaped and
    started again; one agent per work dir; a master killed with -9 takes its agent along."""
    port = free_port()
    data = tmp_path / "d"
    data.mkdir()
    secret = tmp_path / "pw"
    secret.write_text("file-given-admin-pw\n")
    secret.chmod(0o600)
    proc = master_with_agent(tmp_path, port, "--admin-password-file", str(secret))
    try:
        url = f"http://127.0.0.1:{port}"
        api = wait_for(
            lambda: Api.login(url, password="file-given-admin-pw"), timeout=60, what="master up"
        )
        wait_for(lambda: psutil.Process(proc.pid).children(), what="the agent started")
        [agent] = psutil.Process(proc.pid).children()
        token = (data / "join-token").read_text().strip()
        for pid in (proc.pid, agent.pid):
            line = _cmdline(pid)
            assert "file-given-admin-pw" not in line and token not in line, line
        assert "--token-file" in _cmdline(agent.pid)

        # One agent per work directory: a second one says so and leaves. The first holds the
        # directory from its start on; online, it surely does.
        wait_for(
            lambda: [n for n in api.get("/nodes") if n["status"] == "online"],
            timeout=60,
            what="the local agent online",
        )
        second = Proc(
            "second agent",
            [sys.executable, "-m", "agent", "--master", url, "--work-dir", str(data / "agent")],
            tmp_path / "second.log",
            tmp_path,
            child_env(),
        )
        second.start()
        assert second.popen is not None and second.popen.wait(30) == 3
        assert f"another agent (pid {agent.pid}) already runs" in second.tail()

        # A dead agent is reaped (no zombie) and started again by the master.
        wait_for(lambda: [n for n in api.get("/nodes") if n["status"] == "online"], timeout=60)
        agent.kill()
        wait_for(
            lambda: [c for c in psutil.Process(proc.pid).children() if c.pid != agent.pid],
            timeout=30,
            what="the agent started again",
        )
        assert not psutil.pid_exists(agent.pid) or agent.status() != psutil.STATUS_ZOMBIE
        [again] = psutil.Process(proc.pid).children()
        wait_for(
            lambda: [n for n in api.get("/nodes") if n["status"] == "online"],
            timeout=60,
            what="the restarted agent online",
        )
        api.close()

        # kill -9 of the master: its agent gets SIGTERM and ends (no orphan on the work dir).
        proc.kill9()
        _gone, alive = psutil.wait_procs([again], timeout=15)
        assert alive == [], "the local agent outlived a killed master"
    finally:
        proc.stop()
