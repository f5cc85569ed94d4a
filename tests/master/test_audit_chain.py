"""The audit trail is a hash chain: it verifies, and an edited or removed row is found."""

import json
import sqlite3
import threading

import pytest
from alembic import command
from alembic.config import Config

from master.db.session import MIGRATIONS, Database
from master.services import audit
from master.services.audit_chain import GENESIS, row_hash, verify_rows


def chain(n: int) -> list[dict]:
    rows, prev = [], GENESIS
    for i in range(1, n + 1):
        fields = {
            "id": i,
            "ts": 1_800_000_000.25 + i,
            "actor": "admin",
            "action": "create_system",
            "target": f"system={i}",
            "result": "ok",
            "source_ip": "127.0.0.1",
            "detail": {"name": f"s{i}", "nested": {"b": 1, "a": [1, "é"]}},
        }
        digest = row_hash(prev, fields)
        rows.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    return rows


def test_hash_is_canonical_and_covers_every_field():
    row = chain(1)[0]
    reordered = {"nested": {"a": [1, "é"], "b": 1}, "name": "s1"}
    assert row_hash(GENESIS, {**row, "detail": reordered}) == row["hash"]
    for field, value in [
        ("actor", "mallory"),
        ("result", "denied"),
        ("ts", row["ts"] + 1e-6),
        ("detail", {}),
        ("id", 2),
    ]:
        assert row_hash(GENESIS, {**row, field: value}) != row["hash"], field


def test_verify_reports_the_first_broken_link():
    rows = chain(5)
    assert verify_rows(rows) == (5, rows[-1]["hash"], None)
    edited = [dict(r) for r in rows]
    edited[2]["target"] = "system=999"
    count, _, broken = verify_rows(edited)
    assert count == 2 and broken is not None and broken[0] == 3 and "edited" in broken[1]
    removed = rows[:1] + rows[2:]
    count, _, broken = verify_rows(removed)
    assert broken is not None and broken[0] == 3 and "removed" in broken[1]
    assert verify_rows([]) == (0, None, None)


def test_concurrent_writers_keep_one_linear_chain(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()

    def writer(n: int) -> None:
        for i in range(40):
            audit.record(db, actor=f"t{n}", action="write", detail={"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY id")]
    for r in rows:
        r["detail"] = json.loads(r["detail"])
    count, head, broken = verify_rows(rows)
    db.dispose()
    assert broken is None and count == 320 and head == rows[-1]["hash"]
    assert [r["id"] for r in rows] == list(range(1, 321))


def test_migration_chains_rows_written_before_it(tmp_path):
    path = tmp_path / "old.db"
    db = Database(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with sqlite3.connect(path) as conn:
        for i in range(3):
            conn.execute(
                "INSERT INTO audit_log (ts, actor, action, target, result, source_ip, detail) "
                "VALUES (?, 'admin', 'login', '', 'ok', '10.0.0.1', ?)",
                (1_700_000_000.5 + i, '{"username": "admin"}'),
            )
    db.migrate()
    audit.record(db, actor="admin", action="after_upgrade")
    db.dispose()
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY id")]
    for r in rows:
        r["detail"] = json.loads(r["detail"])
    assert verify_rows(rows)[0] == 4 and verify_rows(rows)[2] is None


@pytest.fixture
def tampered_master(master_factory):
    return master_factory("tamper")


def test_a_row_edited_in_the_database_file_is_found_by_verify(tampered_master):
    api = tampered_master.api()
    made = {name: api.post("/systems", {"name": name}, expect=201) for name in "abc"}
    api.request("POST", "/systems", json={"name": "a"}, expect=409)
    ok = api.get("/audit/verify")
    assert ok["ok"] is True and ok["count"] >= 5 and len(ok["head"]) == 64
    assert ok["broken"] is None

    # Someone with access to the file rewrites history: who created system "b".
    db_file = tampered_master.data_dir / "ops_data.db"
    with sqlite3.connect(db_file, timeout=30) as conn:
        (row_id,) = conn.execute(
            "SELECT id FROM audit_log WHERE target=?", (f"system={made['b']['id']}",)
        ).fetchone()
        conn.execute("UPDATE audit_log SET actor='mallory' WHERE id=?", (row_id,))
    bad = api.get("/audit/verify")
    assert bad["ok"] is False
    assert bad["broken"]["id"] == row_id and "edited" in bad["broken"]["reason"]
    assert bad["count"] == row_id - 1

    # Deleting the row instead (and its hash with it) breaks the link to the next one.
    with sqlite3.connect(db_file, timeout=30) as conn:
        conn.execute("DELETE FROM audit_log WHERE id=?", (row_id,))
    bad = api.get("/audit/verify")
    assert bad["broken"]["id"] == row_id + 1 and "removed" in bad["broken"]["reason"]
    api.close()
