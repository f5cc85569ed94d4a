"""The database's start-up: the schema's head read without alembic agrees with alembic's; the
request session's life."""

import threading
from types import SimpleNamespace

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.orm import Session

from master.api import errors
from master.api.deps import SessionDep
from master.db import models
from master.db.session import MIGRATIONS, Database, lock_row, script_head
from protocol.errors import ErrorCode, GdosError


def test_the_head_read_from_the_files_is_alembics():
    assert script_head() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_a_new_database_is_migrated_and_then_seen_at_head(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert not db._at_head()
    db.migrate()
    assert db._at_head()
    db.migrate()  # nothing to do, and nothing breaks
    db.dispose()


def test_more_open_sessions_than_a_default_pool_do_not_wait(db_url):
    """The event loop's thread must never block for a connection that a suspended request
    holds: connections are not capped (SQLite, and PostgreSQL where max_connections bounds
    them)."""
    db = Database(db_url)
    db.migrate()
    held = [db.engine.connect() for _ in range(30)]  # a default pool waits at 15
    try:
        assert [c.exec_driver_sql("select 1").scalar() for c in held] == [1] * 30
    finally:
        for conn in held:
            conn.close()
        db.engine.dispose()


async def test_a_refused_request_lets_go_of_its_row_locks_on_the_event_loop(db_url: str) -> None:
    """The session's close runs later in a worker thread the loop must schedule; a failed
    request rolls back at once on the loop, so loop-side work waiting for a row it locked
    (a hello batch on PostgreSQL) cannot wait for ever."""
    db = Database(db_url)
    db.migrate()
    with db.session() as s:
        node = models.Node(secret_hash="n1", hostname="h")
        s.add(node)
        s.commit()
        node_id = node.id
    app = FastAPI()
    app.state.services = SimpleNamespace(db=db)
    errors.install(app)

    @app.delete("/nodes/{node_id}")
    def refuse(node_id: str, s: SessionDep) -> None:
        node = s.get(models.Node, node_id)
        lock_row(s, node)
        raise GdosError(ErrorCode.IN_USE, "node h still has instances; destroy them first")

    loop_thread, rolled_back_on = threading.get_ident(), []

    def note(_: Session) -> None:
        rolled_back_on.append(threading.get_ident())

    event.listen(Session, "after_rollback", note)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.delete(f"/nodes/{node_id}")
    finally:
        event.remove(Session, "after_rollback", note)
        db.dispose()
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "in_use"
    assert loop_thread in rolled_back_on


def test_a_postgresql_session_idle_in_a_transaction_is_ended_by_the_server(db_url: str) -> None:
    """A stopped master's row locks do not outlive the timeout (the server enforces it)."""
    db = Database(db_url)
    try:
        if not db.is_postgres:
            pytest.skip("SQLite has no server sessions")
        with db.engine.connect() as conn:
            setting = conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar()
        assert setting == "10s"
    finally:
        db.dispose()
