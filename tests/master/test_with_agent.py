"""`gdos-master --with-agent` (what ./run.sh and the console's embedded mode start)."""

import signal
import sys

import psutil
import pytest

from tests.support import ADMIN_PASSWORD, Api, Proc, child_env, free_port, wait_for

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
