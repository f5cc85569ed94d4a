"""Two masters on one PostgreSQL database and one S3 bucket, an agent connected to B only: a
deploy, a start and a stop sent to A reach the node through B and run once, A's event stream
shows what B published about them, once, and a system's batch start and stop driven by A go
through B too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.batch_support import wait_operation
from tests.e2e.test_failover import holder
from tests.e2e.test_lifecycle import deploy_hello
from tests.e2e.test_s3_store import s3_flags
from tests.support import (
    EventStream,
    Master,
    free_port,
    processes_with_env,
    start_masters,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_commands_sent_to_a_reach_a_node_held_by_b_and_its_events_reach_a(
    agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path: Path
) -> None:
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "crossmaster")]
    a, b = (Master(tmp_path / name, extra=flags) for name in ("a", "b"))
    stream: EventStream | None = None
    try:
        start_masters([a, b])
        id_b = (b.data_dir / "master-id").read_text().strip()
        api_a, api_b = a.api(), b.api()
        assert api_a.token is not None
        stream = EventStream(a.url, api_a.token)
        maker = next(m for m in (a, b) if (m.data_dir / "join-token").exists())
        agent = agent_factory(b, token=maker.join_token)  # B's URL only
        node_id = agent.start_and_wait(api_b)
        wait_for(lambda: holder(api_a, node_id) == id_b, 30, what="A sees B holding the node")

        inst = deploy_hello(api_a, node_id, tmp_path, free_port(), name="cross")
        iid = inst["id"]
        api_a.post(f"/instances/{iid}/start")
        wait_for(lambda: api_a.get(f"/instances/{iid}")["state"] == "running", 60, what="start")
        assert len(processes_with_env("GDOS_INSTANCE_ID", iid)) == 1
        # B applied the agent's report and published it; A's consoles saw it once.
        wait_for(lambda: "running" in stream.states_of(iid), 30, what="running on A's stream")
        api_a.post(f"/instances/{iid}/stop")
        wait_for(lambda: api_a.get(f"/instances/{iid}")["state"] == "stopped", 60, what="stop")
        wait_for(lambda: not processes_with_env("GDOS_INSTANCE_ID", iid), 30, what="gone")
        wait_for(lambda: stream.states_of(iid)[-1:] == ["stopped"], 30, what="stopped on A")
        states = stream.states_of(iid)
        assert states.count("running") == 1, states
        # A batch operation driven by A: its level's command goes through B, its steps follow
        # the instance changes B publishes.
        for action, state in (("start", "running"), ("stop", "stopped")):
            op_id = api_a.post(f"/systems/{inst['system_id']}/{action}", expect=202)["operation_id"]
            op = wait_operation(api_a, op_id, 60)
            assert op["state"] == "succeeded", op
            assert api_a.get(f"/instances/{iid}")["state"] == state
        assert stream.states_of(iid).count("running") == 2, stream.states_of(iid)
        assert "was received before" not in agent.log_path.read_text(errors="replace")
    finally:
        if stream is not None:
            stream.close()
        for m in (a, b):
            m.stop()
