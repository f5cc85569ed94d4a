"""Instance rows written on the hot paths: plain columns go straight to SQLite's driver, JSON
ones through SQLAlchemy; either way every change lands and `updated_at` moves."""

from __future__ import annotations

import time

from master.db import models
from master.db.session import Database
from master.services import instance_rows
from protocol.states import InstanceState


def _seed(db: Database, *instances: dict[str, object]) -> list[str]:
    """A node, a system and one instance per dict of columns; their ids in that order."""
    with db.session() as s:
        node, system = models.Node(secret_hash="n"), models.System(name="s")
        s.add_all([node, system])
        s.flush()
        insts = [models.Instance(system_id=system.id, node_id=node.id, **c) for c in instances]
        s.add_all(insts)
        s.commit()
        return [i.id for i in insts]


def test_a_write_of_plain_and_json_changes_lands_and_moves_updated_at(db_url):
    db = Database(db_url)
    db.migrate()
    try:
        ids = _seed(db, *({"name": f"i{n}", "state": "stopped"} for n in range(3)))
        before = time.time()
        plain = {"state": InstanceState.RUNNING, "pid": 42, "drift": True, "last_error": None}
        with db.engine.begin() as conn:
            instance_rows.write(
                conn,
                {
                    ids[0]: plain,
                    ids[1]: {"state": "starting", "applied": {"package_id": None, "settings": "x"}},
                },
            )
        with db.engine.connect() as conn:
            rows = instance_rows.load(conn, ids)
        first, second, untouched = (rows[i] for i in ids)
        assert (first["state"], first["pid"], first["drift"]) == ("running", 42, True)
        assert (second["state"], second["applied"]) == (
            "starting",
            {"package_id": None, "settings": "x"},
        )
        assert first["updated_at"] >= before and second["updated_at"] >= before
        assert untouched["state"] == "stopped" and untouched["updated_at"] < before
    finally:
        db.dispose()


def test_reads_give_the_rows_sqlalchemy_gives_whatever_the_columns_hold(db_url):
    """SQLite's rows are read past SQLAlchemy's result processing: the same dicts, keys in the
    same order, booleans as booleans, JSON decoded, NULL as None, rows in id order."""
    db = Database(db_url)
    db.migrate()
    try:
        seeded = _seed(
            db,
            {"name": "plain", "state": "stopped"},
            dict(
                name="adopted",
                state="running",
                pid=7,
                started_at=1.5,
                adopted=True,
                drift=True,
                adoption={"start_command": "x", "n": [1, 2]},
                override_env={"A": "1"},
                override_args=["--x"],
                applied={"package_id": None, "settings": "abc"},
            ),
        )
        ids = [*seeded, "missing"]
        with db.engine.connect() as conn:
            for read, statement in (
                (instance_rows.load, instance_rows._BY_IDS),
                (instance_rows.load_reported, instance_rows._REPORTED_BY_IDS),
            ):
                got = read(conn, reversed(ids))
                want = instance_rows._rows(conn.execute(statement, {"ids": ids}))
                assert got == want and list(got) == sorted(ids[:2])
                for iid, row in got.items():
                    assert list(row) == list(want[iid])
                    assert [type(v) for v in row.values()] == [type(v) for v in want[iid].values()]
        adopted = got[seeded[1]]
        assert adopted["adopted"] is True and adopted["override_args"] == ["--x"]
    finally:
        db.dispose()
