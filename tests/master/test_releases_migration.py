"""The releases migration: instances deployed before it get their index (1, 2, ... per module,
oldest first), and the schema it makes is the models' schema."""

import sqlite3

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from master.db import models
from master.db.session import MIGRATIONS, Database


def test_existing_instances_are_numbered_per_module_and_the_schema_matches(tmp_path):
    path = tmp_path / "old.db"
    db = Database(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "i21_join_token_uses")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO systems (id, name, description, created_at) VALUES ('s', 's', '', 1)"
        )
        conn.execute(
            "INSERT INTO nodes (id, secret_hash, hostname, ip, os, arch, mac, cpu_count, "
            "mem_total, disk_total, agent_version, labels, enrolled_at, revoked) VALUES "
            "('n', 'h', 'n', '', '', '', '', 1, 1, 1, '', '{}', 1, 0)"
        )
        for mod in ("a", "b"):
            conn.execute(
                "INSERT INTO modules (id, system_id, name, package_name, start_order, env, "
                "created_at) VALUES (?, 's', ?, 'p', 1, '{}', 1)",
                (mod, mod),
            )
        for iid, mod, created in (("i3", "a", 3), ("i1", "a", 1), ("i2", "b", 2), ("i4", "a", 4)):
            conn.execute(
                "INSERT INTO instances (id, system_id, module_id, node_id, name, state, "
                "desired_state, health, restarts, adopted, created_at, updated_at) "
                "VALUES (?, 's', ?, 'n', ?, 'stopped', 'stopped', 'unknown', 0, 0, ?, ?)",
                (iid, mod, iid, created, created),
            )
    db.migrate()
    with sqlite3.connect(path) as conn:
        got = dict(conn.execute("SELECT id, module_index FROM instances"))
        drift = {row[0] for row in conn.execute("SELECT drift FROM instances")}
    assert got == {"i1": 1, "i3": 2, "i4": 3, "i2": 1} and drift == {0}
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    ours = [d for d in diff if "instances" in repr(d) or "operations" in repr(d)]
    assert ours == [], ours
    db.dispose()
