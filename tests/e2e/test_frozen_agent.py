"""The one-file agent, as an operator gets it: built by PyInstaller (once per source state), run
against a real master; it enrols, deploys, starts a service and re-adopts it after a crash."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.agent.test_autostart_cli import FAKE_SYSTEMCTL, verify
from tests.e2e.test_lifecycle import deploy_hello
from tests.frozen_build import agent_processes, frozen_agent
from tests.support import child_env, free_port, port_open, processes_with_env, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the CI build runs on Linux"),
]


@pytest.fixture(scope="module")
def binary() -> Path:
    return frozen_agent()


def kill9_agent(agent) -> None:
    """Crash the agent: SIGKILL the bootloader and the Python it runs, never the services."""
    for pid in reversed(agent_processes(agent.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    agent.popen.wait(10)


def test_version_says_frozen_with_build_info(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines()[1:])
    assert out.stdout.startswith("gdos-agent 0.1.0")
    assert lines["  frozen     "].strip() == "yes"
    assert lines["  commit     "].strip() not in ("", "unknown")
    assert lines["  built      "].strip()[:2] == "20"  # an ISO date


def test_frozen_agent_enrols_deploys_and_readopts_after_a_crash(
    binary, master, api, agent_factory, tmp_path
):
    agent = agent_factory(master, program=[str(binary)])
    node_id = agent.start_and_wait(api, timeout=120)
    port = free_port()
    iid = deploy_hello(api, node_id, tmp_path, port)["id"]
    api.post(f"/instances/{iid}/start", expect=202)
    pid = wait_for(lambda: api.get(f"/instances/{iid}")["pid"], what="pid")
    wait_for(lambda: port_open(port), what="service port")

    # The service did not inherit what the bootloader set up for the agent itself.
    env = psutil.Process(pid).environ()
    assert not [k for k in env if k.startswith("_PYI_") or k == "_MEIPASS2"]
    assert "_MEI" not in env.get("LD_LIBRARY_PATH", "")

    kill9_agent(agent)
    wait_for(lambda: api.get(f"/nodes/{node_id}")["status"] == "offline", what="offline")
    assert port_open(port), "the service must outlive its agent"

    agent.start()  # the credential is in the work dir: no token
    wait_for(lambda: api.get(f"/nodes/{node_id}")["status"] == "online", what="online again")
    inst = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i, what="running"
    )
    assert inst["pid"] == pid
    assert processes_with_env("GDOS_INSTANCE_ID", iid) == [pid]
    assert "re-adopted" in agent.tail()

    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
    assert not port_open(port)


def test_frozen_autostart_enrols_then_installs_a_unit_for_the_binary(binary, master, tmp_path):
    unit_dir, state, work = tmp_path / "units", tmp_path / "state", tmp_path / "work"
    unit_dir.mkdir()
    ctl = tmp_path / "systemctl"
    ctl.write_text(FAKE_SYSTEMCTL.format(python=sys.executable, state=str(state)))
    ctl.chmod(0o755)
    env = child_env(GDOS_AGENT_SYSTEMD_DIR=str(unit_dir), GDOS_AGENT_SYSTEMCTL=str(ctl))
    argv = [str(binary), "--master", master.url, "--work-dir", str(work)]
    done = subprocess.run(
        [*argv, "--token", master.join_token, "--autostart", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (work / "agent-credential.json").exists()  # enrolled first
    unit = (unit_dir / "gdos-agent.service").read_text()
    assert f"ExecStart={binary} --master {master.url} --work-dir {work}\n" in unit
    assert master.join_token not in unit and "Environment=" not in unit
    result = verify(unit_dir / "gdos-agent.service")
    assert result.returncode == 0 and "gdos-agent.service" not in result.stderr, result.stderr
