"""Foundation figures: time from the start call to `running` for the sample service, agent idle RSS.

Run: .venv/bin/python bench/foundation.py   (starts its own master and agent in a temp dir)
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import compile_sources
from tests.support import (
    Agent,
    Master,
    build_package,
    free_port,
    kill_services_under,
    port_open,
    wait_for,
)

ROUNDS = 20


def main() -> None:
    compile_sources()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        master = Master(root / "master")
        master.launch()
        agent = Agent(master, root / "agent")
        api = master.api()
        try:
            node = agent.start_and_wait(api)
            time.sleep(10)  # settle: first psutil calls and imports are done
            rss_idle = psutil.Process(agent.pid).memory_info().rss
            port = free_port()
            api.upload(build_package(root / "p", manifest={"args": ["--port", str(port)]}))
            system = api.post("/systems", {"name": "bench"})
            module = api.post(
                f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"}
            )
            iid = api.post("/instances", {"module_id": module["id"], "node_id": node}, expect=202)[
                "id"
            ]
            wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped")
            to_running, to_port = [], []
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                api.post(f"/instances/{iid}/start", expect=202)
                wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "running", interval=0.002)
                to_running.append(time.perf_counter() - t0)
                wait_for(lambda: port_open(port), interval=0.002)
                to_port.append(time.perf_counter() - t0)
                api.post(f"/instances/{iid}/stop", expect=202)
                wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", interval=0.002)
            rss_one = psutil.Process(agent.pid).memory_info().rss
            med = statistics.median
            print(f"agent idle RSS (no instances): {rss_idle / 2**20:.1f} MiB")
            print(f"agent RSS after {ROUNDS} start/stop cycles: {rss_one / 2**20:.1f} MiB")
            print(
                f"start call -> state running (API poll): median {med(to_running) * 1000:.0f} ms, max {max(to_running) * 1000:.0f} ms"
            )
            print(
                f"start call -> service port answers: median {med(to_port) * 1000:.0f} ms, max {max(to_port) * 1000:.0f} ms"
            )
        finally:
            agent.stop()
            master.stop()
            kill_services_under(root)


if __name__ == "__main__":
    main()
