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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_local_agent_enrols_and_stops_with_the_master(tmp_path, sig):
    port = free_port()
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
    proc = Proc("master+agent", argv, tmp_path / "out.log", tmp_path, child_env())
    proc.start()
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
            agent = psutil.Process(proc.pid).children()[0]
            agent.terminate()
            # The master is its parent and reaps it only when it stops: a zombie is gone.
            wait_for(lambda: agent.status() == psutil.STATUS_ZOMBIE, timeout=30, what="exit")
            wait_for(
                lambda: api.get("/nodes")[0]["status"] == "offline", timeout=30, what="offline"
            )
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
