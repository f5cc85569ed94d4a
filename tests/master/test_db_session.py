"""The database's start-up: the schema's head read without alembic agrees with alembic's."""

from alembic.script import ScriptDirectory

from master.db.session import MIGRATIONS, Database, script_head


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
