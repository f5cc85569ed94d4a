"""An agent cut off from the master for longer than the heartbeat grace, then reconnected:
shown offline and `unknown` meanwhile, no duplicate process, state converges."""

import time

import pytest

from tests.faults.netns import namespace, unavailable_reason
from tests.support import (
    Agent,
    build_package,
    free_port,
    kill_services_under,
    processes_with_env,
    wait_for,
)

REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def test_partition_longer_than_grace_then_heal(master_factory, tmp_path):
    master = master_factory("m", extra=["--host", "0.0.0.0"])
    api = master.api()
    with namespace() as ns:
        agent = Agent(master, tmp_path / "agent")
        agent.argv = [*ns.prefix, *agent.argv]
        agent.argv[agent.argv.index("--master") + 1] = f"http://{ns.host_ip}:{master.port}"
        try:
            node = agent.start_and_wait(api)
            port = free_port()
            api.upload(build_package(tmp_path / "p", manifest={"args": ["--port", str(port)]}))
            system = api.post("/systems", {"name": "part"})
            module = api.post(
                f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"}
            )
            iid = api.post("/instances", {"module_id": module["id"], "node_id": node}, expect=202)[
                "id"
            ]
            wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deploy")
            api.post(f"/instances/{iid}/start", expect=202)
            pid = wait_for(lambda: api.get(f"/instances/{iid}")["pid"], what="running")

            ns.cut()
            t0 = time.monotonic()
            wait_for(
                lambda: api.get(f"/nodes/{node}")["status"] == "offline", timeout=20, what="offline"
            )
            print(f"\npartition noticed after {time.monotonic() - t0:.1f} s")
            assert api.get(f"/instances/{iid}")["state"] == "unknown"
            r = api.request("POST", f"/instances/{iid}/stop")
            assert r.status_code == 409 and r.json()["error"]["code"] == "node_offline"
            time.sleep(5)
            ns.restore()

            wait_for(
                lambda: api.get(f"/nodes/{node}")["status"] == "online",
                timeout=90,
                what="back online",
            )
            inst = wait_for(
                lambda: (i := api.get(f"/instances/{iid}"))["state"] == "running" and i,
                what="converged",
            )
            assert inst["pid"] == pid
            assert processes_with_env("GDOS_INSTANCE_ID", iid) == [pid], "exactly one process"
        finally:
            agent.stop()
            api.close()
            kill_services_under(tmp_path)
