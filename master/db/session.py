"""Engine and sessions. SQLite runs in WAL mode so readers never block the writer."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from protocol.errors import ErrorCode, GdosError

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._open()

    def _open(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # Sessions are used from the event loop thread and from worker threads.
            kwargs["connect_args"] = {"check_same_thread": False}
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

    def migrate(self) -> None:
        """Bring the schema to the newest revision (creates it on an empty database)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = None
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

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


def get_or_404(s: Session, model: type[T], ident: str, noun: str) -> T:
    """The row with this primary key, or the API's 404 ("no <noun> <id>")."""
    row = s.get(model, ident)
    if row is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"no {noun} {ident}")
    return row
