"""`kill -9` the master in the middle of a 30-instance batch start: after a restart the operation
resumes, every instance ends running, and each has exactly one process."""

import pytest

from tests.e2e.batch_support import (
    READY_FILE_CHECK,
    SLOW_READY,
    deploy_all,
    processes_by_marker,
    system_with_modules,
    wait_operation,
)
from tests.support import build_package, wait_for

pytestmark = pytest.mark.slow


def test_kill9_master_during_a_30_instance_batch_start(master_factory, agent_factory, tmp_path):
    master = master_factory()
    api = master.api()
    nodes = [agent_factory(master, f"agent-{i}").start_and_wait(api) for i in range(2)]
    pkgs = tmp_path / "pkgs"
    api.upload(
        build_package(
            pkgs, "gated", manifest={"args": ["2"], "health": READY_FILE_CHECK}, script=SLOW_READY
        )
    )
    api.upload(build_package(pkgs, "plain", manifest={"args": ["0"]}, script=SLOW_READY))
    system_id, mods = system_with_modules(
        api,
        "big",
        [
            {"name": "base", "package": "gated", "start_order": 1},
            {"name": "mid", "package": "gated", "start_order": 2},
            {"name": "top", "package": "plain", "start_order": 3},
        ],
    )
    placements = [(mods[m], nodes[i % 2]) for m in ("base", "mid", "top") for i in range(10)]
    ids = deploy_all(api, placements, timeout=180)
    assert len(ids) == 30

    op_id = api.post(f"/systems/{system_id}/start", expect=202)["operation_id"]
    # Kill it while the first level waits for its health gate: started, not finished.
    wait_for(
        lambda: any(
            s["state"] == "waiting_health" for s in api.get(f"/operations/{op_id}")["steps"]
        ),
        60,
        interval=0.05,
        what="level 1 in progress",
    )
    master.kill9()
    api.close()

    master.launch()
    api = master.api()
    op = wait_operation(api, op_id, timeout=180)
    assert op["state"] == "succeeded", op
    assert op["resumed"] >= 1
    insts = api.get(f"/instances?system_id={system_id}")
    assert len(insts) == 30
    by_marker = processes_by_marker()
    for inst in insts:
        assert inst["state"] == "running", inst
        assert by_marker.get(inst["id"]) == [inst["pid"]], (inst["name"], by_marker.get(inst["id"]))
        assert inst["restarts"] == 0
    api.close()
