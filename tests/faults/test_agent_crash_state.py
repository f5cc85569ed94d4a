"""`kill -9` the agent while it writes its state file, over and over: the file is always whole
and, once the agent is back, every service is known, running once, and controllable."""

import json
import random
import time

import pytest

from tests.support import build_package, processes_with_env, wait_for

pytestmark = pytest.mark.slow

ROUNDS = 12
SLEEPER = "import time\nwhile True: time.sleep(1)\n"


def test_state_survives_kill9_during_writes(master, api, agent_factory, tmp_path):
    agent = agent_factory(master)
    node = agent.start_and_wait(api)
    api.upload(build_package(tmp_path / "p", name="sleeper", script=SLEEPER))
    system = api.post("/systems", {"name": "crashy"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "s", "package": "sleeper"})
    ids = [
        api.post("/instances", {"module_id": module["id"], "node_id": node}, expect=202)["id"]
        for _ in range(4)
    ]
    for iid in ids:
        wait_for(lambda iid=iid: api.get(f"/instances/{iid}")["state"] == "stopped", what="deploy")
        api.post(f"/instances/{iid}/start", expect=202)
    for iid in ids:
        wait_for(lambda iid=iid: api.get(f"/instances/{iid}")["state"] == "running", what="running")

    state_file = agent.work_dir / "agent-state.json"
    rng = random.Random(7)
    for _ in range(ROUNDS):
        # Restarts make the agent write its state several times per instance.
        for iid in ids:
            api.request("POST", f"/instances/{iid}/restart")
        time.sleep(rng.uniform(0.0, 0.25))
        agent.kill9()
        data = json.loads(state_file.read_text())  # never torn: the write is atomic
        assert set(data["instances"]) == set(ids)
        assert not (agent.work_dir / "agent-state.json.corrupt").exists()
        agent.start()
        wait_for(lambda: api.get(f"/nodes/{node}")["status"] == "online", what="online again")

    for iid in ids:
        inst = wait_for(
            lambda iid=iid: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i,
            what=f"{iid} running",
        )
        assert processes_with_env("GDOS_INSTANCE_ID", iid) == [inst["pid"]], (
            "exactly one process each"
        )
    for iid in ids:
        api.post(f"/instances/{iid}/stop", expect=202)
    for iid in ids:
        wait_for(lambda iid=iid: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
        assert processes_with_env("GDOS_INSTANCE_ID", iid) == []
