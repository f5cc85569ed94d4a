"""A throwaway PostgreSQL cluster for tests: initdb in a temporary directory, fsync off, on a free
loopback port, stopped at the end of the session. As root it runs as the `postgres` user
(initdb refuses root); otherwise as the current user."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

PG_USER = "gdos"
PREFERRED_MAJOR = "15"


def find_bindir() -> Path | None:
    """PostgreSQL's server binaries: 15 when installed, else the newest there is."""
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    preferred = [p for p in found if p.parent.name == PREFERRED_MAJOR]
    if preferred:
        return preferred[0]
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    if find_bindir() is None:
        return "PostgreSQL server binaries not found (scripts/system-deps.sh installs them)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb cannot run as the postgres user"
    return None


class Cluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="gdos-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self._seq = 0

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> Cluster:
        self.sockets.mkdir()
        self.log.touch()
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
            for path in (self.sockets, self.log):
                shutil.chown(path, "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            PG_USER,
            "--no-sync",
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off "
            f"-c unix_socket_directories={self.sockets} -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """One statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (a URL nobody is connected to);
        returns its SQLAlchemy URL."""
        self._seq += 1
        name = f"t_{self._seq}"
        if template is None:
            self.execute(f'CREATE DATABASE "{name}"')
            return self.url(name)
        import psycopg

        source = template.rsplit("/", 1)[1]
        # A test that used the template may leave a session closing behind it (a pool's or a
        # listener's connection ends after its engine): the copy refuses while one is there.
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{source}' AND pid <> pg_backend_pid()"
        )
        for attempt in range(50):
            try:
                self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
                return self.url(name)
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)  # the terminated session is still going away
        raise AssertionError("not reached: the last attempt raises")

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SEED_SCHEMA = "gdos_seed"


def _connect(url: str):
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _tables(conn) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version' ORDER BY tablename"
    )
    return [row[0] for row in rows]


def keep_seed(url: str) -> None:
    """Copy what the migrations wrote into a freshly migrated database (the built-in alert
    rule) aside, in a schema the master never reads, for `reset`."""
    with _connect(url) as conn:
        conn.execute(f"CREATE SCHEMA {SEED_SCHEMA}")
        for name in _tables(conn):
            conn.execute(f'CREATE TABLE {SEED_SCHEMA}."{name}" AS TABLE public."{name}"')


def reset(url: str) -> None:
    """The database as `keep_seed` found it: every table emptied, then the seeded rows back."""
    with _connect(url) as conn:
        names = _tables(conn)
        quoted = ", ".join(f'public."{n}"' for n in names)
        with conn.transaction():
            conn.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
            for name in names:
                conn.execute(f'INSERT INTO public."{name}" SELECT * FROM {SEED_SCHEMA}."{name}"')
