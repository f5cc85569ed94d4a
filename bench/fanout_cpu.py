"""The master's own CPU for the fleet benchmark's command fan-out, in process: a batch start and
stop of N instances on N nodes (one each, no module, as bench/fleet_bench.py seeds them), the
master's services with agents faked at the channel seam, each answering its `batch` and
reporting its instance after a delay drawn between 3 ms and `SPREAD` (the fleet's agents answer
over about half a second), a real SQLite file, one batched console on the event stream.

    .venv/bin/python -m bench.fanout_cpu                     # 1,000 nodes, 3 rounds
    .venv/bin/python -m bench.fanout_cpu --base /work/main   # another checkout, alternated

Per operation (the first round is a warm-up): this process's CPU from the call until the
operation ended plus a quarter second (`start`, `stop`, ms); the loop thread's CPU in its
largest turn and the 99th percentile of its turns (`turn_max`, `turn_p99`, ms: what holds the
loop, and so sets its lag, leaving out waiting for a core); and the wall time until the last
command left (`last_sent`, ms: loaded, it measures the machine too); the `operation` events
published per operation (each a save of every step). The websocket layer,
HTTP and the request's own path are not in it: bench/fleet_bench.py measures those.
"""

import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stop_path import alternated  # noqa: E402

SPREAD = 0.5  # seconds: the latest an agent answers its command


def _count_turns(turns: list[float]) -> None:
    """Append the loop thread's CPU of each turn of the event loop (ms) to `turns`."""
    import asyncio.base_events as base_events

    run_once = base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]

    def timed(loop: Any) -> None:
        began = time.thread_time()
        run_once(loop)
        turns.append((time.thread_time() - began) * 1000)

    base_events.BaseEventLoop._run_once = timed  # type: ignore[attr-defined]


async def measure(n: int, rounds: int) -> dict[str, float]:
    """Runs with the master package of the tree first on sys.path (see `main`)."""
    from master.api.events import _write_events
    from master.db import models
    from master.heap import settle_heap
    from master.services.operation_steps import OpState
    from protocol.messages import InstanceReport, Result
    from protocol.states import InstanceState
    from tests.master.fake_agent import FakeAgent
    from tests.master.test_operations import Fleet

    loop = asyncio.get_running_loop()
    work = Path(tempfile.mkdtemp(prefix="gdos-fanout-cpu-"))
    fleet = Fleet(work)
    nodes: list[str] = []
    with fleet.db.session() as s:
        for i in range(n):
            node = models.Node(secret_hash=f"bench-node-{i}", hostname=f"h{i}")
            s.add(node)
            s.flush()
            nodes.append(node.id)
            s.add(
                models.Instance(
                    system_id=fleet.system_id,
                    node_id=node.id,
                    name=f"p-{i:05d}",
                    state="stopped",
                    desired_state="stopped",
                )
            )
        s.commit()
    draw = random.Random(1)
    sent: list[float] = []

    def agent(node: str) -> None:
        def answer(msg: dict[str, Any]) -> None:
            sent.append(time.perf_counter())
            ids = msg["instance_ids"]
            state = InstanceState.RUNNING if msg["action"] == "start" else InstanceState.STOPPED
            reports = [InstanceReport(instance_id=i, state=state) for i in ids]
            result = Result(reply_to=msg["id"], ok=True, data={"results": dict.fromkeys(ids)})

            def reply() -> None:
                fake.link.resolve(result)
                fleet.orch.reports.queue(node, reports)

            loop.call_later(draw.uniform(0.003, SPREAD), reply)

        fake = FakeAgent(fleet.agents, node, answer)

    for node_id in nodes:
        agent(node_id)

    class Console:
        async def send_text(self, text: str) -> None:
            pass

    sub = fleet.hub.subscribe()
    sub.batch = True
    writer = asyncio.create_task(_write_events(Console(), sub))  # type: ignore[arg-type]
    ended = asyncio.Event()  # set by the operation's final event (no polling: its CPU would count)
    published: list[int] = [0]  # `operation` events (saves) of the operation measured

    def on_operation(data: dict[str, Any]) -> None:
        published[0] += 1
        if data["state"] != "running":
            ended.set()

    fleet.hub.listen("operation", on_operation)
    settle_heap()  # as the master once it serves: set-up frozen, then each collection's survivors
    turns: list[float] = []
    _count_turns(turns)
    cpu: dict[str, list[float]] = {"start": [], "stop": []}
    kept: list[float] = []
    last_sent: list[float] = []
    events: list[float] = []
    for r in range(rounds):
        for kind in ("start", "stop"):
            await asyncio.sleep(0.3)
            ended.clear()
            sent.clear()
            turns.clear()
            published[0] = 0
            c0, w0 = time.process_time(), time.perf_counter()
            op = fleet.begin(kind)
            await ended.wait()
            await asyncio.sleep(0.25)  # its events written, a deferred save
            assert op.state == OpState.SUCCEEDED, op.error
            if r == 0:
                continue  # warm-up: the statements' first compilations
            cpu[kind].append((time.process_time() - c0) * 1000)
            kept.extend(turns)
            last_sent.append((max(sent) - w0) * 1000)
            events.append(published[0])
    writer.cancel()
    fleet.db.dispose()
    shutil.rmtree(work, ignore_errors=True)
    kept.sort()
    return {k: statistics.median(v) for k, v in cpu.items()} | {
        "turn_max": kept[-1],
        "turn_p99": kept[int(len(kept) * 0.99)],
        "last_sent": statistics.median(last_sent),
        "operation_events": statistics.median(events),
    }


def main() -> int:
    return alternated(
        __doc__ or "",
        __file__,
        measure,
        1000,
        3,
        lambda got, n: (
            f"master CPU per start {got['start']:.0f} ms, stop {got['stop']:.0f} ms over {n} "
            f"nodes; largest loop turn {got['turn_max']:.1f} ms, p99 {got['turn_p99']:.1f}; "
            f"last command out after {got['last_sent']:.0f} ms; "
            f"{got['operation_events']:.0f} operation events each"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
