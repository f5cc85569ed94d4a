"""A system spread over many nodes, one instance each: the shape of DESIGN.md's command fan-out
(bench/fleet_bench.py measures it at 1,000 agents). Simulated agents speak the real protocol to a
real master; the operation reaches every node exactly once per action and succeeds, and each
instance ends in the state asked for. Also keeps the benchmark's simulator honest: if its
`batch` answer drifted from what the master expects, this fails before a benchmark misleads."""

import asyncio

from bench.fleet import connected_agents
from protocol.rest import OperationStarted
from tests.support import build_package, wait_for

NODES = 40


def test_a_system_over_many_nodes_starts_and_stops_once_per_node(master_factory, tmp_path):
    master = master_factory()
    api = master.api()
    api.upload(build_package(tmp_path / "p", name="wide"))
    system = api.post("/systems", {"name": "wide"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "svc", "package": "wide"})

    def instances() -> list[dict]:
        return api.get(f"/instances?system_id={system['id']}")

    def operation(action: str) -> dict:
        op = api.post(f"/systems/{system['id']}/{action}", expect=202)
        # The answer is encoded without models: it must still be what the API documents.
        started = OperationStarted.model_validate(op)
        assert started.operation_id == started.id and len(started.steps) == NODES
        assert started.kind == action and started.state == "running"
        return wait_for(
            lambda: (o := api.get(f"/operations/{op['operation_id']}"))["state"] != "running" and o,
            60,
            what=f"{action} operation",
        )

    async def scenario() -> tuple[dict, dict, list[int], list[dict]]:
        names = [f"wide-{n}" for n in range(NODES)]
        async with connected_agents(master.url, master.join_token, names) as agents:
            for a in agents:
                await asyncio.to_thread(
                    api.post, "/instances", {"module_id": module["id"], "node_id": a.node_id}
                )
            await asyncio.to_thread(
                wait_for,
                lambda: len(i := instances()) == NODES and all(x["state"] == "stopped" for x in i),
                60,
                what="deploys",
            )
            started = await asyncio.to_thread(operation, "start")
            up = await asyncio.to_thread(instances)
            stopped = await asyncio.to_thread(operation, "stop")
            down = await asyncio.to_thread(instances)  # before the agents go (then: unknown)
            return started, stopped, [len(a.batches_received) for a in agents], up + down

    started, stopped, per_node, seen = asyncio.run(scenario())
    assert started["state"] == "succeeded", started
    assert stopped["state"] == "succeeded", stopped
    assert len(started["steps"]) == NODES
    assert {st["state"] for st in started["steps"] + stopped["steps"]} == {"done"}
    assert per_node == [2] * NODES, "one batch per node for the start and one for the stop"
    assert [x["state"] for x in seen] == ["running"] * NODES + ["stopped"] * NODES
