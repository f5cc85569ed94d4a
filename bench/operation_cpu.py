"""The master's own CPU for a batch stop-all and start-all of N instances over 10 nodes: the
master's services in process (no HTTP, agents faked at the channel seam, each reporting its
instances' new states 20 ms after the command, as the programs' exits would), a real SQLite
file, one console on the event stream (batched, as the console asks).

    .venv/bin/python -m bench.operation_cpu                     # 100 instances, 8 rounds
    .venv/bin/python -m bench.operation_cpu --base /work/main   # another checkout, alternated

CPU is this process's (`time.process_time`), from the call until the operation ended and its
events were written, plus a quarter second for what follows (a deferred save). Load hardly
distorts it, unlike the wall time of bench/batch.py. Prints the median per variant, in ms.
"""

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stop_path import alternated  # noqa: E402


async def measure(n: int, rounds: int) -> dict[str, float]:
    """Runs with the master package of the tree first on sys.path (see `main`)."""
    from master.api.events import _write_events
    from master.db import models
    from master.services.operation_steps import OpState
    from protocol.messages import InstanceReport, Result
    from protocol.states import InstanceState
    from tests.master.fake_agent import FakeAgent
    from tests.master.test_operations import Fleet

    loop = asyncio.get_running_loop()
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="gdos-operation-cpu-")))
    nodes = [fleet.node_id]
    with fleet.db.session() as s:
        for i in range(9):
            node = models.Node(secret_hash=f"bench-node-{i}", hostname=f"h{i}")
            s.add(node)
            s.commit()
            nodes.append(node.id)
        mod = models.Module(system_id=fleet.system_id, name="p", package_name="p", start_order=1)
        s.add(mod)
        s.commit()
        for i in range(n):
            s.add(
                models.Instance(
                    system_id=fleet.system_id,
                    node_id=nodes[i % len(nodes)],
                    name=f"p-{i}",
                    state="stopped",
                    desired_state="stopped",
                    module_id=mod.id,
                )
            )
        s.commit()

    def agent(node: str) -> None:
        def answer(msg: dict[str, Any]) -> Result:
            ids = msg["instance_ids"]
            state = InstanceState.RUNNING if msg["action"] == "start" else InstanceState.STOPPED
            reports = [InstanceReport(instance_id=i, state=state) for i in ids]
            loop.call_later(0.02, fleet.orch.reports.queue, node, reports)
            return Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

        FakeAgent(fleet.agents, node, answer)

    for node_id in nodes:
        agent(node_id)

    class Console:
        async def send_text(self, text: str) -> None:
            json.loads(text)

    sub = fleet.hub.subscribe()
    sub.batch = True
    writer = asyncio.create_task(_write_events(Console(), sub))  # type: ignore[arg-type]
    ended = asyncio.Event()  # set by the operation's final event (no polling: its CPU would count)

    def on_operation(data: dict[str, Any]) -> None:
        if data["state"] != "running":
            ended.set()

    fleet.hub.listen("operation", on_operation)
    cpu: dict[str, list[float]] = {"start": [], "stop": []}
    for _ in range(rounds):
        for kind in ("start", "stop"):
            await asyncio.sleep(0.3)
            ended.clear()
            c0 = time.process_time()
            op = fleet.begin(kind)
            await ended.wait()
            await asyncio.sleep(0.25)  # its events written, a deferred save
            cpu[kind].append((time.process_time() - c0) * 1000)
            assert op.state == OpState.SUCCEEDED, op.error
    writer.cancel()
    fleet.db.dispose()
    return {k: statistics.median(v) for k, v in cpu.items()}


def main() -> int:
    return alternated(
        __doc__ or "",
        __file__,
        measure,
        100,
        8,
        lambda got, n: (
            f"master CPU per stop-all {got['stop']:.2f} ms, start-all {got['start']:.2f} ms, "
            f"{n} instances"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
