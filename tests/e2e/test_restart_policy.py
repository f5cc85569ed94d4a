"""Restart policies applied by the agent on the exit event (with backoff, a limit, a reset by a
manual start, and while the master is away), and `pid_strategy: match`."""

import itertools
import uuid

import psutil
import pytest

from tests.e2e.batch_support import SLOW_READY, deploy_all, processes_by_marker, system_with_modules
from tests.support import (
    Agent,
    EventStream,
    build_package,
    kill_services_under,
    processes_with_env,
    wait_for,
)

pytestmark = pytest.mark.slow

CRASHER = """\
import sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{time.time()}\\n")
sys.exit(1)
"""


@pytest.fixture(scope="module")
def node(shared_master, shared_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("restart-agents")
    agent = Agent(shared_master, root / "agent")
    node_id = agent.start_and_wait(shared_api)
    yield node_id
    agent.stop()
    kill_services_under(root)


def one_instance(api, node_id, pkg_path, package):
    api.upload(pkg_path)
    _system_id, mods = system_with_modules(
        api, f"s-{uuid.uuid4().hex[:6]}", [{"name": package, "package": package}]
    )
    return deploy_all(api, [(mods[package], node_id)])[0]


def test_on_failure_backs_off_then_fails_and_a_manual_start_resets(
    shared_master, shared_api, node, tmp_path
):
    api = shared_api
    starts = tmp_path / "starts.log"
    pkg = build_package(
        tmp_path / "p",
        "crasher",
        manifest={"args": [str(starts)], "restart": "on-failure", "restart_limit": 4},
        script=CRASHER,
    )
    iid = one_instance(api, node, pkg, "crasher")
    stream = EventStream(shared_master.url, api.token)
    api.post(f"/instances/{iid}/start", expect=202)
    inst = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "failed" and i, 60, what="failed"
    )
    assert "exited with code 1" in inst["last_error"]
    assert "gave up after 4 failures within 60 s" in inst["last_error"]
    assert inst["restarts"] == 3 and inst["pid"] is None
    times = [float(x) for x in starts.read_text().split()]
    assert len(times) == 4, "the first run and three restarts, then no more"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Backoff: immediate, then ~0.5 s, then ~1 s (+-20 % jitter; start-up time comes on top).
    assert gaps[1] >= 0.4 and gaps[2] >= 0.8, gaps
    errors = [e.get("last_error") or "" for e in stream.topic("instance") if e["id"] == iid]
    assert any("restarting in" in e for e in errors), errors

    # A manual start resets the count: four more tries, then failed again.
    api.post(f"/instances/{iid}/start", expect=202)
    wait_for(lambda: len(starts.read_text().split()) == 8, 60, what="second round")
    again = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "failed" and i,
        60,
        what="failed again",
    )
    assert again["restarts"] == 6
    assert len(starts.read_text().split()) == 8
    stream.close()


def test_match_strategy_finds_the_real_process(shared_api, node, tmp_path):
    api = shared_api
    tag = f"daemon-{uuid.uuid4().hex[:10]}"
    launcher = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{tag}'], start_new_session=True)\n"
    )
    pkg = build_package(
        tmp_path / "p",
        "forker",
        manifest={"pid_strategy": "match", "process_cmdline": tag},
        script=launcher,
    )
    iid = one_instance(api, node, pkg, "forker")
    api.post(f"/instances/{iid}/start", expect=202)
    inst = wait_for(
        lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i, 60, what="running"
    )
    proc = psutil.Process(inst["pid"])
    assert tag in proc.cmdline(), "the daemon, not the start command"
    assert processes_with_env("GDOS_INSTANCE_ID", iid) == [inst["pid"]]
    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
    # Gone (a zombie at most: its parent exited, and who reaps orphans depends on the host).
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_the_agent_restarts_a_crashed_service_while_the_master_is_down(
    master_factory, agent_factory, tmp_path
):
    master = master_factory()
    api = master.api()
    node_id = agent_factory(master).start_and_wait(api)
    pkg = build_package(
        tmp_path / "p", "steady", manifest={"args": ["0"], "restart": "always"}, script=SLOW_READY
    )
    iid = one_instance(api, node_id, pkg, "steady")
    api.post(f"/instances/{iid}/start", expect=202)
    first = wait_for(lambda: api.get(f"/instances/{iid}")["pid"], what="pid")
    api.close()

    master.kill9()
    psutil.Process(first).kill()
    new = wait_for(
        lambda: (pids := processes_by_marker().get(iid)) and pids != [first] and pids,
        30,
        interval=0.02,
        what="restarted without the master",
    )
    assert len(new) == 1

    master.launch()
    api = master.api()
    inst = wait_for(
        lambda: (
            (i := api.get(f"/instances/{iid}"))["state"] == "running" and i["pid"] == new[0] and i
        ),
        60,
        what="master sees the new process",
    )
    assert inst["restarts"] == 1 and inst["desired_state"] == "running"
    api.close()


BAD_CONFIG = """\
import sys
print("reading /etc/app.yaml", file=sys.stderr, flush=True)
print("ConfigError: port must be a number, not 'eighty'", file=sys.stderr, flush=True)
sys.exit(3)
"""


def test_a_failed_start_shows_the_last_lines_of_stderr(shared_api, node, tmp_path):
    pkg = build_package(tmp_path / "p", "badconf", script=BAD_CONFIG)
    iid = one_instance(shared_api, node, pkg, "badconf")
    shared_api.post(f"/instances/{iid}/start", expect=202)
    inst = wait_for(
        lambda: (i := shared_api.get(f"/instances/{iid}"))["state"] == "exited" and i,
        60,
        what="exited",
    )
    assert inst["last_error"] == (
        "exited with code 3; stderr: reading /etc/app.yaml / "
        "ConfigError: port must be a number, not 'eighty'"
    )
