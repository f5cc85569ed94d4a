"""The master on SQLite and on a real PostgreSQL server: the API's answers are the same on both,
races between connections are settled by the database, and PostgreSQL's start-up checks and
its several-master start are clean."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from master.__main__ import main as master_main
from master.db import models
from master.db.session import Database, normalize_url, retry_conflicts
from master.services import accounts
from protocol.errors import GdosError
from protocol.messages import HostInfo
from tests.e2e.test_s3_store import s3_flags
from tests.master.inprocess import make_app, running
from tests.pg import reset
from tests.support import Master, build_package, free_port, wait_for


def test_postgresql_urls_all_go_through_psycopg_3():
    for given in ("postgres://u@h/d", "postgresql://u@h/d", "postgresql+psycopg2://u@h/d"):
        assert normalize_url(given) == "postgresql+psycopg://u@h/d"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_api_answers_alike_on_both_databases(db_url, tmp_path):
    app = make_app(tmp_path / "data", db_url=db_url)
    with running(app) as (client, auth):

        def call(method: str, path: str, expect: int, **kw) -> httpx.Response:
            r = client.request(method, "/api/v1" + path, headers=auth, **kw)
            assert r.status_code == expect, (method, path, r.text)
            return r

        system = call("POST", "/systems", 201, json={"name": "shop"}).json()
        assert call("POST", "/systems", 409, json={"name": "shop"}).json()["error"]["code"] == (
            "already_exists"
        )
        zipped = build_package(tmp_path / "pkgs", "web", "1.0.0").read_bytes()
        headers = {**auth, "Content-Type": "application/zip"}
        r = client.post("/api/v1/packages", content=zipped, headers=headers)
        assert r.status_code == 201, r.text
        # The resumable way, in two pieces: the upload's row is read and written each time.
        second = build_package(tmp_path / "pkgs", "web", "1.0.1").read_bytes()
        tus = {**auth, "Tus-Resumable": "1.0.0"}
        r = client.post(
            "/api/v1/packages/uploads", headers={**tus, "Upload-Length": str(len(second))}
        )
        assert r.status_code == 201, r.text
        where, half = r.headers["Location"], len(second) // 2
        octets = {**tus, "Content-Type": "application/offset+octet-stream"}
        for at, piece in ((0, second[:half]), (half, second[half:])):
            r = client.patch(where, content=piece, headers={**octets, "Upload-Offset": str(at)})
            assert r.status_code == 204, r.text
        assert client.head(where, headers=tus).headers["Upload-Offset"] == str(len(second))
        versions = {p["version"] for p in call("GET", "/packages", 200).json()}
        assert versions == {"1.0.0", "1.0.1"}
        module = {"name": "web", "package": "web"}
        mod = call("POST", f"/systems/{system['id']}/modules", 201, json=module).json()
        call("POST", f"/systems/{system['id']}/modules", 409, json=module)

        user = {"username": "otto", "password": "operator-pass", "role": "operator"}
        call("POST", "/users", 201, json=user)
        call("POST", "/users", 409, json=user)
        call("DELETE", "/users/otto", 204)

        token = call("POST", "/join-tokens", 201, json={"max_uses": 1}).json()
        enrol = {"join_token": token["token"], "host": HostInfo(hostname="h1").to_dict()}
        enrolled = client.post("/api/v1/agent/enroll", json=enrol)
        assert enrolled.status_code == 201, enrolled.text
        assert client.post("/api/v1/agent/enroll", json=enrol).status_code == 403
        call("DELETE", f"/nodes/{enrolled.json()['node_id']}", 204)

        backup = client.post("/api/v1/backups", headers=auth)
        if db_url.startswith("postgresql"):
            assert backup.status_code == 501, backup.text
            assert "pg_dump" in backup.json()["error"]["message"]
            call("GET", "/backups", 501)
        else:
            assert backup.status_code == 201, backup.text

        ids = {p["version"]: p["id"] for p in call("GET", "/packages", 200).json()}
        call("DELETE", f"/packages/{ids['1.0.1']}", 409)  # the module runs the newest
        call("DELETE", f"/modules/{mod['id']}", 204)
        call("DELETE", f"/packages/{ids['1.0.1']}", 204)
        call("DELETE", f"/systems/{system['id']}", 204)
        verified = call("GET", "/audit/verify", 200).json()
        assert verified["ok"] and verified["count"] >= 10, verified


def test_a_database_out_of_reach_is_a_503_to_retry(pg_cluster, pg_module_db, tmp_path):
    url = pg_cluster.create_database(template=pg_module_db)
    name = url.rsplit("/", 1)[1]
    app = make_app(tmp_path / "data", db_url=url)
    try:
        with running(app) as (client, auth):
            assert client.get("/api/v1/systems", headers=auth).status_code == 200
            pg_cluster.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            pg_cluster.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            r = client.get("/api/v1/systems", headers=auth)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["message"] == (
                "the master cannot reach its database; retry shortly"
            )
            pg_cluster.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert client.get("/api/v1/systems", headers=auth).status_code == 200
    finally:
        pg_cluster.drop_database(url)


def test_concurrent_enrolments_take_exactly_the_uses_a_join_token_allows(db_url, tmp_path):
    db = Database(db_url)
    db.migrate()
    with db.session() as s:
        token, row = accounts.create_join_token(s, None, "tester", max_uses=3)
    start = threading.Barrier(12)

    def claim(_: int) -> bool:
        start.wait(30)
        with db.session() as s:
            try:
                accounts.claim_join_token(s, token)
            except GdosError:
                return False
            s.commit()
            return True

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(claim, range(12)))
    with db.session() as s:
        uses = s.scalar(select(models.JoinToken.uses).where(models.JoinToken.id == row.id))
    db.dispose()
    assert outcomes.count(True) == 3 and uses == 3


def test_a_transaction_aborted_by_a_deadlock_is_run_again(pg_module_db):
    reset(pg_module_db)
    db = Database(pg_module_db)
    with db.session() as s:
        s.add_all([models.System(id="a", name="a"), models.System(id="b", name="b")])
        s.commit()
    table = models.System.__table__
    both_hold_one = threading.Barrier(2)
    attempts: list[str] = []

    def crosswise(first: str, second: str) -> None:
        def once() -> None:
            attempts.append(first)
            with db.engine.begin() as conn:
                conn.execute(update(table).where(table.c.id == first).values(description="1"))
                if attempts.count(first) == 1:
                    both_hold_one.wait(30)
                conn.execute(update(table).where(table.c.id == second).values(description="2"))

        retry_conflicts(once)

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(crosswise, "a", "b"), pool.submit(crosswise, "b", "a")]
        for future in done:
            future.result(60)  # neither gives up
    db.dispose()
    assert sorted(attempts) in (["a", "a", "b"], ["a", "b", "b"])  # one of them ran twice


def serve_in_process(capsys, *args: str) -> tuple[int, str]:
    """`gdos-master ...` through its entry point, without a new interpreter."""
    code = master_main(list(args))
    return code, capsys.readouterr().err


def test_an_unreachable_postgresql_server_is_one_line_and_exit_2(tmp_path, capsys):
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://gdos@127.0.0.1:{port}/gdos"
    code, err = serve_in_process(capsys, "--data-dir", str(tmp_path), "--db-url", url)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"gdos-master: cannot use the database at 127.0.0.1:{port}/gdos")


def test_a_postgresql_url_without_psycopg_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # the seam: `import psycopg` fails
    url = "postgresql://gdos@127.0.0.1:1/gdos"
    code, err = serve_in_process(capsys, "--data-dir", str(tmp_path), "--db-url", url)
    assert code == 2, err
    assert err.strip().splitlines() == [
        "gdos-master: --db-url names PostgreSQL but psycopg is not installed: "
        "pip install 'gdos[postgres]'"
    ]


def problems_in(log: Path) -> list[str]:
    words = ("Traceback", " ERROR ", "error:", "Exception")
    return [line for line in log.read_text().splitlines() if any(w in line for w in words)]


@pytest.mark.slow
def test_three_masters_share_one_postgresql_database(pg_cluster, s3_server, tmp_path):
    """Cold start at the same instant on an empty database (with one S3 bucket: several masters
    refuse the local store), then concurrent enrolments and audited requests through all
    three: one admin, one default join token, a token's uses counted exactly, and one audit
    chain that verifies."""
    url = pg_cluster.create_database()
    extra = ["--db-url", url, *s3_flags(s3_server, "three-masters")]
    masters = [Master(tmp_path / f"m{i}", extra=extra) for i in range(3)]
    try:
        for m in masters:
            super(Master, m).start()  # all three at once, before any is ready
        for m in masters:
            wait_for(m._healthy, 90, what=f"{m.data_dir.name} ready\n{m.tail()}")

        db = Database(url)
        with db.session() as s:
            admins = s.scalar(select(func.count()).where(models.User.username == "admin"))
            defaults = s.scalar(
                select(func.count()).where(models.JoinToken.is_default, ~models.JoinToken.revoked)
            )
        assert admins == 1 and defaults == 1
        files = [m.data_dir / "join-token" for m in masters if (m.data_dir / "join-token").exists()]
        assert len(files) == 1

        apis = [m.api() for m in masters]
        token = apis[0].post("/join-tokens", {"max_uses": 4})["token"]

        def enrol(n: int) -> int:
            body = {"join_token": token, "host": HostInfo(hostname=f"h{n}").to_dict()}
            base = masters[n % 3].url
            return httpx.post(f"{base}/api/v1/agent/enroll", json=body, timeout=60).status_code

        def audited(n: int) -> int:
            body = {"name": f"sys-{n}"}
            return apis[n % 3].request("POST", "/systems", json=body).status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(enrol, range(12)))
            created = list(pool.map(audited, range(18)))
        assert sorted(codes) == [201] * 4 + [403] * 8, codes
        assert created == [201] * 18, created

        verified = apis[2].get("/audit/verify")
        with db.session() as s:
            ids = list(s.scalars(select(models.AuditEntry.id).order_by(models.AuditEntry.id)))
        db.dispose()
        assert verified["ok"], verified
        assert verified["count"] == len(ids) and ids == list(range(1, len(ids) + 1))
        assert len(ids) >= 12 + 18 + 1
        for api in apis:
            api.close()
        for m in masters:
            assert problems_in(m.log_path) == [], m.tail()
    finally:
        for m in masters:
            m.stop()
        pg_cluster.drop_database(url)


SQLITE_MASTER_IMPORTS = """
import sys, tempfile
from pathlib import Path
import master.app
from master.config import Settings
from master.db.session import Database
master.app.create_app(Settings(data_dir=Path(tempfile.mkdtemp())))
Database("sqlite:///" + tempfile.mkdtemp() + "/x.db").dispose()
print("sqlalchemy.dialects.postgresql" in sys.modules)
"""


def test_a_master_on_sqlite_leaves_the_postgresql_dialect_unimported(tmp_path):
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", SQLITE_MASTER_IMPORTS],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "False", out


def test_on_postgresql_the_open_alert_index_is_partial_as_its_migration_made_it():
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex

    index = next(i for i in models.Alert.__table__.indexes if i.name == "uq_alerts_open")
    assert "WHERE state = 'firing'" in str(CreateIndex(index).compile(dialect=sqlite.dialect()))
    models.use_postgresql()
    models.use_postgresql()  # once or again: the same
    ddl = str(CreateIndex(index).compile(dialect=postgresql.dialect()))
    assert ddl.rstrip().endswith("WHERE state = 'firing'"), ddl
