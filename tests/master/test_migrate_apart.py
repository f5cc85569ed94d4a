"""`gdos-master` migrates a new or older schema in a child process (master/db/apart.py): alembic
and what it imports (Mako, Pygments, the PostgreSQL dialect: about 15 MiB) never enter the
serving master, and a child that fails leaves the migration to the master as before."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from master.db import apart
from master.db.session import Database
from tests.pg import Cluster

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter (this one imported alembic already): migrate apart, then say what it holds.
PROBE = """
import sys
from master.db.session import Database
db = Database(sys.stdin.read().strip())
db.migrate(apart=True)
print(db._at_head(), sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako', 'pygments'}))
db.dispose()
"""


def _migrated_apart(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        input=url,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def empty_pg(pg_cluster: Cluster) -> Iterator[str]:
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


def test_a_new_sqlite_file_is_migrated_by_a_child_and_alembic_stays_out(tmp_path: Path) -> None:
    assert _migrated_apart(f"sqlite:///{tmp_path / 'master.db'}") == "True []"


def test_a_new_postgresql_database_is_migrated_by_a_child(empty_pg: str) -> None:
    assert _migrated_apart(empty_pg) == "True []"


def test_a_failing_child_leaves_the_migration_to_the_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apart, "child_command", lambda: [sys.executable, "-c", "exit(3)"])
    db = Database(f"sqlite:///{tmp_path / 'master.db'}")
    try:
        db.migrate(apart=True)
        assert db._at_head()
    finally:
        db.dispose()


def test_a_database_in_memory_is_migrated_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child would open a database of its own: nothing is asked of one."""
    asked: list[str] = []
    monkeypatch.setattr(apart, "migrate_apart", asked.append)
    db = Database("sqlite://")
    try:
        db.migrate(apart=True)
        assert db._at_head() and not asked
    finally:
        db.dispose()


def test_the_programs_own_entry_migrates_as_the_frozen_master_asks_it(tmp_path: Path) -> None:
    """A frozen master runs itself with `CHILD_ARG` (no `-c` there): `master.__main__` answers."""
    url = f"sqlite:///{tmp_path / 'master.db'}"
    subprocess.run(
        [sys.executable, "-m", "master", apart.CHILD_ARG],
        input=url,
        text=True,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    db = Database(url)
    try:
        assert db._at_head()
    finally:
        db.dispose()
