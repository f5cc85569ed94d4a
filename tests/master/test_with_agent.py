"""`gdos-master --with-agent` (what ./run.sh and the console's embedded mode start)."""

import signal
import sys

import psutil
import pytest

from tests.support import ADMIN_PASSWORD, Api, Proc, child_env, free_port, wait_for

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

        # One agent per work directory: a second one says so and leaves.
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
