"""Engine and sessions. SQLite runs in WAL mode so readers never block the writer; PostgreSQL
(psycopg 3) runs under READ COMMITTED, so its read-check-writes lock rows (`lock_row`,
`with_for_update()`) and retry when it aborts them (`retry_conflicts`)."""

import functools
import logging
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from master.db import apart as schema_apart
from protocol.errors import ErrorCode, GdosError

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")
log = logging.getLogger(__name__)

# Keys of PostgreSQL advisory locks (one 64-bit space per database): "gdos" and a number.
MIGRATION_LOCK_KEY = 0x6764_6F73_0001
BOOTSTRAP_LOCK_KEY = 0x6764_6F73_0002
# SQLSTATEs after which PostgreSQL has rolled the transaction back and a new attempt may pass.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected
RETRY_ATTEMPTS = 5


# A master stopped (SIGSTOP) or cut off mid-transaction would hold its row locks until it woke
# up, and the other masters' hello batches would wait for them: the server ends such a session
# after this long idle in a transaction, and finds a host gone without a FIN by keepalives.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
PG_SESSION_OPTIONS = (
    f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS} "
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
)


# Each master's pooled sessions carry its tag (pg_stat_activity's application_name, beside its
# lease session's `gdos-master <id>` and its bus's `gdos-bus`), so that another master can tell a
# stalled master's sessions from its own.
SESSION_TAG_PREFIX = "gdos-pool "
# A take-over (an agent's hello) waits this long for a row lock before it looks for the holder.
LOCK_WAIT_MS = 500
LOCK_NOT_AVAILABLE = "55P03"  # the SQLSTATE of a lock_timeout
LOCK_WAIT_ATTEMPTS = 20
# Another master's session idle in a transaction this long while it blocks a take-over is a
# stopped process: a live master never pauses between the statements of a transaction so long.
STALLED_AFTER_S = 2.0
_END_STALLED = text(
    "SELECT a.pid, a.application_name, pg_terminate_backend(a.pid) FROM pg_stat_activity a "
    "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
    "AND a.state = 'idle in transaction' "
    "AND a.state_change < clock_timestamp() - make_interval(secs => :stalled) "
    "AND a.application_name LIKE :others AND a.application_name <> :me "
    "AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid "
    "AND l.relation = ANY(CAST(:tables AS regclass[])))"
)


class DatabaseUnavailable(Exception):
    """The configured database cannot be used; the message is one sentence for the operator."""


def normalize_url(url: str) -> str:
    """PostgreSQL URLs go through psycopg 3 whatever driver they name (or none)."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _where(url: str) -> str:
    """The server and database a URL names, without its password."""
    try:
        u = make_url(url)
    except ArgumentError:
        return "the database"
    port = f":{u.port}" if u.port else ""
    return f"{u.host or 'localhost'}{port}/{u.database or ''}"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, when the driver gives one."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


def retry_conflicts(work: Callable[[], T], attempts: int = RETRY_ATTEMPTS) -> T:
    """Run `work` (one whole transaction) again when PostgreSQL aborted it for a deadlock or a
    serialization failure; SQLite never raises those. Other errors pass through at once."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            log.info("database conflict (%s), attempt %d: trying again", sqlstate(exc), attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def take_over(
    db: "Database",
    work: Callable[[], T],
    tables: Iterable[str],
    attempts: int = LOCK_WAIT_ATTEMPTS,
) -> T:
    """Run `work` (one whole transaction that began with `db.bound_lock_wait`) as
    `retry_conflicts` does; when it gave up waiting for a lock, end the stalled masters'
    sessions holding locks on `tables` (`end_stalled`) and try again, instead of waiting for
    the server's idle-in-transaction timeout."""
    names = list(tables)
    for attempt in range(1, attempts + 1):
        try:
            return retry_conflicts(work)
        except DBAPIError as exc:
            if sqlstate(exc) != LOCK_NOT_AVAILABLE or attempt == attempts:
                raise
            db.end_stalled(names)
    raise AssertionError("unreachable")


def lock_row(s: Session, obj: object, share: bool = False) -> None:
    """Re-read `obj` under a row lock (SELECT ... FOR UPDATE, or FOR SHARE with `share`) on
    PostgreSQL, so that a check and the write after it see no other master's change in
    between; SQLite serialises writers by itself, so nothing is done there."""
    if s.get_bind().dialect.name == "postgresql":
        s.refresh(obj, with_for_update={"read": True} if share else True)


def lock_by_id(s: Session, model: type[Any], ident: str) -> bool:
    """Lock one row by primary key until the transaction ends (PostgreSQL; SQLite needs no
    lock); False when the row is gone."""
    if s.get_bind().dialect.name != "postgresql":
        return True
    key = model.__table__.c.id
    return s.execute(select(key).where(key == ident).with_for_update()).first() is not None


def advisory_xact_lock(s: Session, key: int) -> None:
    """Hold a PostgreSQL advisory lock until the session's transaction ends (no-op on SQLite)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.is_postgres = self.url.startswith("postgresql")
        self.session_tag = SESSION_TAG_PREFIX + secrets.token_hex(6)  # this master's sessions
        self._open()

    def _open(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # Sessions are used from the event loop thread and from worker threads.
            kwargs["connect_args"] = {"check_same_thread": False}
            if make_url(self.url).database not in (None, "", ":memory:"):  # a file: QueuePool
                # No cap on connections: a capped pool makes the event loop wait, blocked, for a
                # connection a suspended request holds, and that request needs the loop to finish.
                kwargs["max_overflow"] = -1
        if self.is_postgres:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise DatabaseUnavailable(
                    "--db-url names PostgreSQL but psycopg is not installed: "
                    "pip install 'gdos[postgres]'"
                ) from None
            from master.db import models  # here: this module is imported before the models

            models.use_postgresql()
            # A connection the server dropped (a restart, a failover) is replaced, not used;
            # a server that does not answer is reported, not waited for.
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {
                "connect_timeout": 10,
                "options": PG_SESSION_OPTIONS,
                "application_name": self.session_tag,
            }
            # Uncapped for the same reason as SQLite's file pool (a capped pool makes the event
            # loop wait, blocked, for a connection a suspended request holds); the server's
            # max_connections bounds it instead (docs/several-masters.md says how to size it).
            kwargs["max_overflow"] = -1
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sqlite_file(self) -> Path | None:
        """The database file, for SQLite URLs naming one."""
        if not self.is_sqlite:
            return None
        name = self.engine.url.database
        return Path(name).absolute() if name and name != ":memory:" else None

    def replace_file(self, staged: Path) -> None:
        """Swap the SQLite file under this object: close every pooled connection, move `staged`
        into place, reopen and migrate. Callers make sure no session is open meanwhile
        (see master/services/restore.py); everything keeps using this same object."""
        from master.db.sqlite_files import replace_database

        live = self.sqlite_file
        if live is None:
            raise ValueError("only a SQLite file database can be replaced")
        self.engine.dispose()
        replace_database(live, staged)
        self._open()
        self.migrate()

    def check_reachable(self) -> None:
        """Connect once, or raise `DatabaseUnavailable` saying which server did not answer."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            why = first[0] if first else type(exc).__name__
            raise DatabaseUnavailable(
                f"cannot use the database at {_where(self.url)}: {why}"
            ) from None

    def migrate(self, apart: bool = False) -> None:
        """Bring the schema to the newest revision (creates it on an empty database). On
        PostgreSQL one master at a time migrates, under an advisory lock held until the
        migration commits: masters starting together wait, then find the schema current.
        `apart`: a schema behind is migrated by a child process (`master.db.apart`), so that
        alembic's imports never enter this one; should that fail, it is migrated here."""
        if self._at_head():
            return  # the usual start: alembic, a tenth of the start-up, is not even imported
        if apart and self._shared() and schema_apart.migrate_apart(self.url) and self._at_head():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = None
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _shared(self) -> bool:
        """Whether another process opening this URL sees the same database (not in memory)."""
        return self.is_postgres or self.sqlite_file is not None

    def _at_head(self) -> bool:
        head = script_head()
        if head is None:
            return False
        try:
            with self.engine.connect() as conn:
                stamped = [
                    r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))
                ]
        except SQLAlchemyError:  # a new database: no table yet
            return False
        return stamped == [head]

    def bound_lock_wait(self, conn: Connection) -> None:
        """This transaction waits `LOCK_WAIT_MS` at most for a row lock (PostgreSQL), then
        fails with `LOCK_NOT_AVAILABLE` (see `take_over`)."""
        if self.is_postgres:
            conn.execute(text(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}"))

    def end_stalled(self, tables: list[str]) -> int:
        """End the sessions of other masters idle in a transaction for `STALLED_AFTER_S` or
        more that hold locks on `tables`: their process is stopped (SIGSTOP, a frozen VM) and
        would hold the rows until the server's idle timeout. Their transaction rolls back, so
        a stalled master that wakes writes nothing it read before it stopped."""
        if not self.is_postgres:
            return 0
        params = {
            "stalled": STALLED_AFTER_S,
            "others": SESSION_TAG_PREFIX + "%",
            "me": self.session_tag,
            "tables": names_literal(tables),
        }
        with self.engine.connect() as conn:
            ended = conn.execute(_END_STALLED, params).all()
            conn.commit()
        for pid, tag, _ in ended:
            log.warning(
                "ended database session %s of %s: idle in a transaction for %.0f s or more "
                "while holding rows another master needs (a stopped master)",
                pid,
                tag.removeprefix(SESSION_TAG_PREFIX),
                STALLED_AFTER_S,
            )
        return len(ended)

    def now(self) -> float:
        """UNIX seconds by the database's clock on PostgreSQL (every master agrees on it), by
        this host's on SQLite (one master)."""
        if not self.is_postgres:
            return time.time()
        with self.engine.connect() as conn:
            value = conn.execute(text("SELECT extract(epoch from clock_timestamp())")).scalar()
        return float(value or 0.0)

    @staticmethod
    def known_revisions() -> set[str]:
        """Every schema revision this version can migrate from."""
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS))
        return {rev.revision for rev in script.walk_revisions()}

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessionmaker() as s:
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


_REVISION = re.compile(r"^revision(?::[^=]*)?=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN = re.compile(r"^down_revision(?::[^=]*)?=\s*(?:[\"']([^\"']+)[\"']|None)\s*$", re.M)


@functools.cache
def script_head() -> str | None:
    """The newest revision under MIGRATIONS, from each file's plain `revision` and
    `down_revision` lines; None when a file says them otherwise (alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def names_literal(tables: Iterable[str]) -> str:
    """Table names as a PostgreSQL array literal (`{nodes,instances}`)."""
    return "{" + ",".join(tables) + "}"


def check_database(url: str) -> None:
    """Before serving: the driver is installed and a server database answers, else
    `DatabaseUnavailable` (a SQLite file is created at start, so it is not opened here)."""
    db = Database(url)
    try:
        if not db.is_sqlite:
            db.check_reachable()
    finally:
        db.dispose()


def get_or_404(s: Session, model: type[T], ident: str, noun: str) -> T:
    """The row with this primary key, or the API's 404 ("no <noun> <id>")."""
    row = s.get(model, ident)
    if row is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"no {noun} {ident}")
    return row
