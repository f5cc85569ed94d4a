"""Migrating the schema in a child process, so that alembic never enters a serving master.

Alembic imports Mako, Pygments (through Mako's error pages) and SQLAlchemy's PostgreSQL
dialect: 13-15 MiB of RSS a master kept for its whole life after migrating a new or older
database (issue 18's memory budget). `gdos-master` migrates through a child of its own instead
(the same interpreter and source, or the frozen program given `CHILD_ARG`; the database URL on
its standard input, so that a password stays out of `ps`), then finds the schema current and
imports none of it.
"""

import logging
import sys
from pathlib import Path

CHILD_ARG = "_migrate-schema"  # not an option: `gdos-master`'s own use, never typed
TIMEOUT_S = 900.0  # a long migration of a large database, or another master's under its lock
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `master` package

log = logging.getLogger(__name__)


# From source: this interpreter, finding `master` where this process found it (appended to
# the path, so that nothing of this tree shadows the standard library or the venv).
_FROM_SOURCE = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from master.db.apart import child_main; sys.exit(child_main())"
)


def child_command() -> list[str]:
    """This program again: the frozen executable, or this interpreter from source."""
    if getattr(sys, "frozen", False):
        return [sys.executable, CHILD_ARG]
    return [sys.executable, "-c", _FROM_SOURCE, str(SOURCE_ROOT)]


def migrate_apart(url: str) -> bool:
    """Migrate the database at `url` in a child process; False when it did not succeed (the
    caller then migrates in process, which raises the migration's own error)."""
    import subprocess  # here: `gdos-master` imports this module before it takes its port

    try:
        done = subprocess.run(
            child_command(),
            input=url,
            text=True,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not migrate in a child process (%s): migrating here", exc)
        return False
    if done.returncode:
        last = (done.stderr or "").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        log.warning("migrating in a child process failed (%s): migrating here", last[0])
        return False
    return True


def child_main() -> int:
    """The child: migrate the database whose URL comes on standard input."""
    from master.db.session import Database

    db = Database(sys.stdin.read().strip())
    try:
        db.migrate()
    finally:
        db.dispose()
    return 0
