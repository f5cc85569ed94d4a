"""A master's start: every instance out of sight until its node's hello, marked before the
master's caches load."""

from __future__ import annotations

import uuid
from pathlib import Path

from master.db import models
from tests.master.inprocess import make_app, running, services_of


def seed(data_dir: Path, states: list[str]) -> list[str]:
    """One node with an instance in each state, written while no master runs."""
    app = make_app(data_dir)
    with running(app):
        svc = services_of(app)
        with svc.db.session() as s:
            system = models.System(name=f"s{uuid.uuid4().hex[:8]}")
            node = models.Node(secret_hash=uuid.uuid4().hex)
            s.add_all([system, node])
            s.flush()
            rows = [
                models.Instance(
                    system_id=system.id,
                    node_id=node.id,
                    name=f"i{n}",
                    state=state,
                    desired_state="running",
                )
                for n, state in enumerate(states)
            ]
            s.add_all(rows)
            s.commit()
            ids = [r.id for r in rows]
        # The previous master's shutdown may have marked them: as a kill -9 leaves them.
        with svc.db.session() as s:
            for iid, state in zip(ids, states, strict=True):
                inst = s.get(models.Instance, iid)
                assert inst is not None
                inst.state = state
            s.commit()
    return ids


def test_a_started_master_has_every_idle_instance_unknown_in_its_rows_and_its_caches(
    tmp_path: Path,
) -> None:
    states = ["running", "stopped", "exited", "failed", "deploying", "destroying", "unknown"]
    ids = seed(tmp_path / "m", states)
    app = make_app(tmp_path / "m")
    with running(app) as (client, auth):
        svc = services_of(app)
        expected = dict(
            zip(ids, ["unknown"] * 4 + ["deploying", "destroying", "unknown"], strict=True)
        )
        listed = client.get("/api/v1/instances", headers=auth).json()
        assert {i["id"]: i["state"] for i in listed if i["id"] in expected} == expected
        assert {iid: svc.directory.instances[iid].state for iid in ids} == expected
