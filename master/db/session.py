"""Engine and sessions. SQLite runs in WAL mode so readers never block the writer."""

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError
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
            if make_url(self.url).database not in (None, "", ":memory:"):  # a file: QueuePool
                # No cap on connections: a capped pool makes the event loop wait, blocked, for a
                # connection a suspended request holds, and that request needs the loop to finish.
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

    def migrate(self) -> None:
        """Bring the schema to the newest revision (creates it on an empty database)."""
        if self._at_head():
            return  # the usual start: alembic, a tenth of the start-up, is not even imported
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = None
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

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


def get_or_404(s: Session, model: type[T], ident: str, noun: str) -> T:
    """The row with this primary key, or the API's 404 ("no <noun> <id>")."""
    row = s.get(model, ident)
    if row is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"no {noun} {ident}")
    return row
