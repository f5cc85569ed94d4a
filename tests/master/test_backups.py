"""Backups: consistent snapshots under write load, the command-line restore, the API's
refusals, scheduled backups with retention, and PostgreSQL's clear answer."""

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from master.__main__ import main as master_main
from master.db.session import Database
from master.db.sqlite_files import integrity_problems
from master.services.backups import BackupService
from tests.master.inprocess import make_app, running, services_of, settings_for
from tests.support import ROOT, child_env, wait_for

RATE = 500  # rows per second written while the backup runs


class Writer(threading.Thread):
    """Inserts numbered systems into a SQLite file at RATE rows/s, one transaction per row,
    through its own connection (like another process would)."""

    def __init__(self, db_file: Path, prefix: str = "load") -> None:
        super().__init__(daemon=True)
        self.db_file = db_file
        self.prefix = prefix
        self.written = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.db_file, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")  # as the master's own connections
            began = time.monotonic()
            while not self.stop.is_set():
                n = self.written + 1
                conn.execute(
                    "INSERT INTO systems (id, name, description, created_at) VALUES (?, ?, '', ?)",
                    (f"{self.prefix}{n:07d}", f"{self.prefix}-{n:07d}", time.time()),
                )
                self.written = n
                lag = began + n / RATE - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            self.rate = self.written / (time.monotonic() - began)
            conn.close()
        except BaseException as exc:
            self.error = exc


def load_rows(path: Path, prefix: str = "load") -> list[str]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT name FROM systems WHERE name LIKE ? ORDER BY name", (f"{prefix}-%",)
            )
        ]


def test_snapshots_under_500_writes_per_second_are_consistent(tmp_path):
    settings = settings_for(tmp_path)
    db = Database(settings.database_url)
    db.migrate()
    service = BackupService(settings, db)
    writer = Writer(settings.sqlite_path)
    writer.start()
    wait_for(lambda: writer.written > 200, what="writes under way")
    made = []
    for _ in range(3):
        before = writer.written
        made.append((asyncio.run(service.create("manual", "test")), before))
        time.sleep(0.3)
    writer.stop.set()
    writer.join(30)
    assert writer.error is None
    print(f"\nwriter: {writer.written} rows at {writer.rate:.0f} rows/s during 3 backups")
    for backup, before in made:
        path = service.path_of(backup.id)
        assert integrity_problems(path) == []
        rows = load_rows(path)
        # Consistent: a gap-free prefix of what was written, at least what preceded the call.
        assert rows == [f"load-{n:07d}" for n in range(1, len(rows) + 1)]
        assert before <= len(rows) <= writer.written
        assert hashlib.sha256(path.read_bytes()).hexdigest() == backup.sha256
        assert path.stat().st_mode & 0o777 == 0o600
    assert [b.id for b in service.entries()] == sorted((b.id for b, _ in made), reverse=True)
    db.dispose()


def restore_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`gdos-master restore ...` through the same entry point, without a new interpreter."""
    code = master_main(["restore", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def restore_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master", "restore", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_backup_under_load_then_cli_restore_into_a_new_master(master_factory, tmp_path, capsys):
    master = master_factory("live")
    api = master.api()
    writer = Writer(master.data_dir / "ops_data.db")
    writer.start()
    wait_for(lambda: writer.written > 300, what="writes under way")
    backup = api.post("/backups", expect=201)
    assert set(backup) >= {"id", "size", "created_at"}
    time.sleep(0.5)  # writes go on after the snapshot
    writer.stop.set()
    writer.join(30)
    assert writer.error is None
    print(f"\nwriter: {writer.written} rows at {writer.rate:.0f} rows/s")
    assert [b["id"] for b in api.get("/backups")] == [backup["id"]]

    r = api.request("GET", f"/backups/{backup['id']}/download", expect=200)
    copy = tmp_path / "downloaded.db"
    copy.write_bytes(r.content)
    assert hashlib.sha256(r.content).hexdigest() == backup["sha256"]
    assert integrity_problems(copy) == []
    in_backup = load_rows(copy)
    assert 0 < len(in_backup) < writer.written
    assert in_backup == [f"load-{n:07d}" for n in range(1, len(in_backup) + 1)]

    # Refused while a master runs on the data directory; nothing changes.
    before = load_rows(master.data_dir / "ops_data.db")
    code, _, err = restore_in_process(capsys, str(copy), "--data-dir", str(master.data_dir))
    assert code == 2 and "a master is running" in err
    assert load_rows(master.data_dir / "ops_data.db") == before

    fresh = tmp_path / "restored"
    done = restore_cli(str(copy), "--data-dir", str(fresh))
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout
    restored = master_factory("restored")  # same --data-dir layout: tmp_path / "restored"
    assert restored.data_dir == fresh
    api2 = restored.api()  # the backup's admin password
    names = sorted(s["name"] for s in api2.get("/systems") if s["name"].startswith("load-"))
    assert names == in_backup
    verdict = api2.get("/audit/verify")
    assert verdict["ok"] is True, verdict
    assert api2.get("/audit", params={"action": "restore_cli"})[0]["actor"].startswith("cli")
    api.close()
    api2.close()


def test_cli_restore_refuses_bad_files_and_leaves_the_database_alone(tmp_path, capsys):
    settings = settings_for(tmp_path / "data")
    settings.data_dir.mkdir()
    db = Database(settings.database_url)
    db.migrate()
    service = BackupService(settings, db)
    good = service.path_of(asyncio.run(service.create()).id)
    db.dispose()
    live = settings.sqlite_path
    digest = hashlib.sha256(live.read_bytes()).hexdigest()

    corrupt = tmp_path / "corrupt.db"
    data = bytearray(good.read_bytes())
    page = 3 * 4096  # the audit_log table's root page (4 KiB pages)
    data[page : page + 2000] = b"\xa5" * 2000
    corrupt.write_bytes(bytes(data))
    text = tmp_path / "notes.db"
    text.write_text("not a database\n")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")

    for path, expected in [
        (corrupt, "integrity check"),
        (text, "not a SQLite database"),
        (other, "not a GDOS master database"),
        (tmp_path / "missing.db", "does not exist"),
    ]:
        code, out, err = restore_in_process(capsys, str(path), "--data-dir", str(settings.data_dir))
        assert code == 2, (path, out, err)
        assert expected in err and "Traceback" not in err, err
    assert hashlib.sha256(live.read_bytes()).hexdigest() == digest
    assert not service.dir.exists() or len(list(service.dir.glob("*.db"))) == 1

    code, _, err = restore_in_process(capsys, str(good), "--db-url", "postgresql://db/gdos")
    assert code == 2 and "pg_restore" in err
    assert hashlib.sha256(live.read_bytes()).hexdigest() == digest

    code, out, err = restore_in_process(capsys, str(good), "--data-dir", str(settings.data_dir))
    assert code == 0 and "restored" in out, err
    kinds = sorted(b.kind for b in service.entries())
    assert kinds == ["manual", "pre-restore"]  # the replaced database was kept


def test_backup_api_refusals(tmp_path):
    app = make_app(tmp_path / "m")
    with running(app) as (client, admin):
        svc = services_of(app)
        client.post(
            "/api/v1/users",
            headers=admin,
            json={"username": "olga", "password": "operator-pw", "role": "operator"},
        )
        client.post(
            "/api/v1/users",
            headers=admin,
            json={"username": "vic", "password": "viewer-pw1", "role": "viewer"},
        )

        def login(user: str, pw: str) -> dict:
            token = client.post(
                "/api/v1/auth/login", json={"username": user, "password": pw}
            ).json()["token"]
            return {"Authorization": f"Bearer {token}"}

        operator, viewer = login("olga", "operator-pw"), login("vic", "viewer-pw1")
        assert client.post("/api/v1/backups", headers=viewer).status_code == 403
        made = client.post("/api/v1/backups", headers=operator)
        assert made.status_code == 201
        bid = made.json()["id"]
        assert client.get("/api/v1/backups", headers=viewer).json()[0]["id"] == bid
        assert client.get(f"/api/v1/backups/{bid}/download", headers=operator).status_code == 403
        r = client.post(f"/api/v1/backups/{bid}/restore", headers=operator)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        for bad in ("nope", "..%2Fops_data", "20260101T000000Z-abcdef", "%2Fetc%2Fpasswd"):
            r = client.get(f"/api/v1/backups/{bad}/download", headers=admin)
            assert r.status_code == 404, (bad, r.text)
            assert client.post(f"/api/v1/backups/{bad}/restore", headers=admin).status_code == 404

        # A file in the backup directory that is not a sound database: 422, nothing changes.
        client.post("/api/v1/systems", headers=admin, json={"name": "keep-me"})
        (svc.backups.dir / "20260101T000000Z-0badf0.db").write_bytes(
            b"SQLite format 3\x00" + b"\x00" * 5000
        )
        r = client.post("/api/v1/backups/20260101T000000Z-0badf0/restore", headers=admin)
        assert r.status_code == 422, r.text
        assert (
            "integrity" in r.json()["error"]["message"] or "SQLite" in r.json()["error"]["message"]
        )
        names = [s["name"] for s in client.get("/api/v1/systems", headers=admin).json()]
        assert names == ["keep-me"]
        audit = client.get(
            "/api/v1/audit", headers=admin, params={"action": "restore_backup"}
        ).json()
        assert {a["result"] for a in audit} == {"denied", "error_404", "error_422"}

        # Delete: admin only, then gone.
        assert client.delete(f"/api/v1/backups/{bid}", headers=operator).status_code == 403
        assert client.delete(f"/api/v1/backups/{bid}", headers=admin).status_code == 204
        assert client.get(f"/api/v1/backups/{bid}/download", headers=admin).status_code == 404


def test_postgresql_masters_are_told_to_use_pg_dump(tmp_path, monkeypatch):
    app = make_app(tmp_path / "m")
    with running(app) as (client, admin):
        db = services_of(app).db
        # The seam: which database this master runs on (no PostgreSQL server in the test).
        monkeypatch.setattr(db, "is_sqlite", False)
        monkeypatch.setattr(db, "url", "postgresql+psycopg://gdos@db/gdos")
        for method, path in [
            ("POST", "/api/v1/backups"),
            ("GET", "/api/v1/backups"),
            ("POST", "/api/v1/backups/20260101T000000Z-abcdef/restore"),
        ]:
            r = client.request(method, path, headers=admin)
            assert r.status_code == 501, (path, r.text)
            err = r.json()["error"]
            assert err["code"] == "unsupported" and "pg_dump" in err["message"]
            assert "postgresql" in err["message"]


def test_scheduled_backups_keep_only_the_newest(master_factory):
    master = master_factory("sched", extra=["--backup-interval", "0.5", "--backup-keep", "2"])
    api = master.api()
    api.post("/backups", expect=201)  # manual ones are never pruned

    def settled() -> bool:
        rows = api.get("/audit", params={"action": "scheduled_backup"})
        kinds = [b["kind"] for b in api.get("/backups")]
        return len(rows) >= 4 and kinds.count("scheduled") == 2 and kinds.count("manual") == 1

    wait_for(settled, timeout=60, what="four scheduled backups, two kept")
    rows = api.get("/audit", params={"action": "scheduled_backup"})
    assert all(r["actor"] == "scheduler" and r["result"] == "ok" for r in rows)
    assert any(r["detail"]["pruned"] for r in rows)
    files = list((master.data_dir / "backups").glob("*.db"))
    assert 3 <= len(files) <= 4  # a third scheduled one may be between write and prune
    assert httpx.get(master.url + "/healthz").status_code == 200
    api.close()


def test_requests_wait_at_a_closed_gate_then_get_a_clear_503(tmp_path, monkeypatch):
    from master.api import middleware

    app = make_app(tmp_path / "m")
    with running(app) as (client, admin):
        gate = services_of(app).gate
        monkeypatch.setattr(middleware, "HOLD_TIMEOUT", 0.3)
        gate.close()
        try:
            r = client.post("/api/v1/systems", headers=admin, json={"name": "held"})
        finally:
            gate.open()
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert "restoring a backup" in r.json()["error"]["message"]
        assert client.get("/api/v1/systems", headers=admin).json() == []
        rows = client.get("/api/v1/audit", headers=admin, params={"action": "POST /api/v1/systems"})
        assert [row["result"] for row in rows.json()] == ["error_503"]


def test_a_restore_that_cannot_quiesce_changes_nothing(tmp_path, monkeypatch):
    from master.services import restore

    app = make_app(tmp_path / "m")
    with running(app) as (client, admin):
        bid = client.post("/api/v1/backups", headers=admin).json()["id"]
        client.post("/api/v1/systems", headers=admin, json={"name": "after-backup"})
        gate = services_of(app).gate
        monkeypatch.setattr(restore, "DRAIN_TIMEOUT", 0.3)
        gate.inflight += 1  # a request that does not finish (a long upload, say)
        try:
            r = client.post(f"/api/v1/backups/{bid}/restore", headers=admin)
        finally:
            gate.inflight -= 1
        assert r.status_code == 409 and "nothing was restored" in r.json()["error"]["message"]
        assert gate.is_open
        names = [s["name"] for s in client.get("/api/v1/systems", headers=admin).json()]
        assert names == ["after-backup"]
        assert client.get("/api/v1/audit/verify", headers=admin).json()["ok"] is True
        assert not list((tmp_path / "m").glob(".ops_data.db.restore-*"))  # staging cleaned up
