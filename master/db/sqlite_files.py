"""SQLite at the file level: online snapshots, integrity checks, in-use detection, and the
atomic replacement of a database file by another.

These run in worker threads (they can take seconds on a large database) and use the sqlite3
module directly: a snapshot must not go through the ORM's pool, and a file being checked
is not the application's database.
"""

import contextlib
import os
import sqlite3
from pathlib import Path

from protocol.errors import ErrorCode, GdosError

SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")
REQUIRED_TABLES = frozenset({"alembic_version", "audit_log", "users", "nodes", "instances"})
# The "deadman switch" byte of the WAL index: every connection holds a shared lock on it.
_SHM_DMS_OFFSET = 128


def _readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)


def fsync_path(path: Path, directory: bool = False) -> None:
    if directory and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(live: Path, dest: Path) -> None:
    """A consistent copy of `live` while other connections keep writing.

    `VACUUM INTO` reads the database in one read transaction (WAL readers never block the
    writer, and the writer never disturbs the reader), and writes a compact, self-contained
    file (no WAL) that is fsynced before this returns."""
    if dest.exists():
        raise FileExistsError(dest)
    src = sqlite3.connect(str(live), timeout=30)
    try:
        src.execute("VACUUM INTO ?", (str(dest),))
    finally:
        src.close()
    fsync_path(dest)


def integrity_problems(path: Path, limit: int = 5) -> list[str]:
    """What `PRAGMA integrity_check` finds; empty when the file is sound."""
    try:
        with contextlib.closing(_readonly(path)) as conn:
            rows = conn.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found


def schema_revision(path: Path) -> str:
    with contextlib.closing(_readonly(path)) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else ""


def check_restorable(path: Path, known_revisions: set[str]) -> str:
    """Refuse anything but a sound GDOS database this version can migrate; returns its revision."""
    name = path.name
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise GdosError(ErrorCode.NOT_FOUND, f"{name} does not exist") from None
    except OSError as exc:
        raise GdosError(ErrorCode.BAD_REQUEST, f"cannot read {name}: {exc.strerror}") from None
    if header != SQLITE_HEADER:
        raise GdosError(ErrorCode.VALIDATION_FAILED, f"{name} is not a SQLite database")
    problems = integrity_problems(path)
    if problems:
        raise GdosError(
            ErrorCode.VALIDATION_FAILED,
            f"{name} fails the integrity check: {problems[0]}",
            {"problems": problems},
        )
    try:
        with contextlib.closing(_readonly(path)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        revision = schema_revision(path) if "alembic_version" in tables else ""
    except sqlite3.DatabaseError as exc:
        raise GdosError(ErrorCode.VALIDATION_FAILED, f"{name} is unreadable: {exc}") from None
    missing = REQUIRED_TABLES - tables
    if missing:
        raise GdosError(
            ErrorCode.VALIDATION_FAILED,
            f"{name} is not a GDOS master database (no {', '.join(sorted(missing))} table)",
        )
    if revision not in known_revisions:
        raise GdosError(
            ErrorCode.CONFLICT,
            f"{name} has schema revision {revision!r}, unknown to this version of GDOS "
            "(made by a newer master?)",
            {"schema_revision": revision},
        )
    return revision


def copy_database(src: Path, dest: Path) -> None:
    """Copy with SQLite's backup API (so a source with a WAL is copied whole), leaving `dest`
    as one self-contained file in rollback-journal mode."""
    with contextlib.closing(_readonly(src)) as s, contextlib.closing(sqlite3.connect(dest)) as d:
        s.backup(d)
    finalize(dest)


def finalize(path: Path) -> None:
    """Fold any WAL back into the file and leave no side files, so it can be moved atomically."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    for suffix in SIDE_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    fsync_path(path)


def in_use(path: Path) -> bool:
    """True when another process has this WAL database open (a running master).

    Every SQLite connection to a WAL database holds a shared lock on one byte of the `-shm`
    file for as long as it is open; an exclusive lock on that byte fails while any does."""
    shm = Path(f"{path}-shm")
    try:
        import fcntl
    except ImportError:  # Windows: the running master holds the file open; replace would fail
        return False
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_OFFSET)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS_OFFSET)
        return False
    finally:
        os.close(fd)


def replace_database(live: Path, staged: Path) -> None:
    """Put `staged` in place of `live`. Every connection to `live` must be closed: its WAL and
    index files are removed first (they belong to the old database and would corrupt the new)."""
    for suffix in SIDE_FILES:
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    os.replace(staged, live)
    fsync_path(live.parent, directory=True)
