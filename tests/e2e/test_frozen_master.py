"""The one-file master and the one-file agent, as an operator gets them (built once per source
state): a package uploaded, deployed, started, its port answering."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_lifecycle import deploy_hello
from tests.frozen_build import frozen_dist
from tests.support import free_port, port_open, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the CI build runs on Linux"),
]


@pytest.fixture(scope="module")
def dist() -> Path:
    return frozen_dist()


def test_the_frozen_master_says_so_and_passes_its_self_check(dist):
    out = subprocess.run(
        [dist / "gdos-master", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("gdos-master 0.1.0") and "frozen     : yes" in out.stdout
    check = subprocess.run(
        [dist / "gdos-master", "--self-check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
    assert "revisions applied in memory" in check.stdout
    assert check.stdout.rstrip().endswith("gdos-master: self-check passed")


def test_frozen_master_and_agent_deploy_and_start_a_package(
    dist, master_factory, agent_factory, tmp_path
):
    master = master_factory(program=[str(dist / "gdos-master")])
    api = master.api()
    try:
        agent = agent_factory(master, program=[str(dist / "gdos-agent")])
        node_id = agent.start_and_wait(api, timeout=120)
        port = free_port()
        iid = deploy_hello(api, node_id, tmp_path, port)["id"]
        api.post(f"/instances/{iid}/start", expect=202)
        wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "running", what="running")
        wait_for(lambda: port_open(port), what="service port")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "hi there\n"

        api.post(f"/instances/{iid}/stop", expect=202)
        wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
        assert not port_open(port)
    finally:
        api.close()
