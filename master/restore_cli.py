"""`gdos-master restore FILE`: put a backup in place of a stopped master's database.

The file is checked (SQLite, integrity_check, a GDOS schema this version can migrate), the
current database is kept as a `pre-restore` backup, and the restored copy is migrated before
it atomically replaces the database. A master still running on that database is refused:
restore through the API instead (`POST /api/v1/backups/{id}/restore`).
"""

import argparse
import getpass
import json
import os
import secrets
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from master.config import Settings
from master.db import sqlite_files
from master.db.session import Database
from master.services import audit
from master.services.backups import BackupService, new_backup_id
from master.services.restore import prepare_copy
from protocol.errors import ErrorCode, GdosError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gdos-master restore",
        description="Restore a backup into a stopped master's data directory.",
    )
    p.add_argument("file", type=Path, help="a backup (.db) made by GDOS")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("GDOS_DATA_DIR", ".")),
        help="the master's data directory (default: GDOS_DATA_DIR or .)",
    )
    p.add_argument(
        "--db-path",
        type=Path,
        default=os.environ.get("GDOS_DB_PATH"),
        help="the SQLite file, when not <data-dir>/ops_data.db",
    )
    p.add_argument("--backup-dir", type=Path, default=os.environ.get("GDOS_BACKUP_DIR"))
    p.add_argument("--db-url", default=os.environ.get("GDOS_DB_URL", ""), help=argparse.SUPPRESS)
    return p


def restore(file: Path, settings: Settings, actor: str) -> tuple[str, str | None]:
    """Returns (schema revision of the file, id of the safety backup or None)."""
    live = settings.sqlite_path
    if sqlite_files.in_use(live):
        raise GdosError(
            ErrorCode.CONFLICT,
            f"a master is running on {live}; stop it first, or restore through the API "
            "(POST /api/v1/backups/{id}/restore)",
        )
    sqlite_files.check_restorable(file, Database.known_revisions())
    live.parent.mkdir(parents=True, exist_ok=True)
    safety = keep_current(live, settings, actor) if live.exists() else None
    staged = live.with_name(f".{live.name}.restore-{secrets.token_hex(4)}")
    revision = prepare_copy(file, staged)
    sqlite_files.replace_database(live, staged)
    db = Database(settings.database_url)
    try:
        db.migrate()
        audit.record(
            db,
            actor=actor,
            action="restore_cli",
            target=f"file={file.name}",
            detail={"file": str(file.absolute()), "safety_backup": safety, "revision": revision},
        )
    finally:
        db.dispose()
    return revision, safety


def keep_current(live: Path, settings: Settings, actor: str) -> str:
    """Keep the database about to be replaced as a `pre-restore` backup; a database too broken
    to snapshot (often why one restores) is kept as a raw copy of its files instead."""
    safety = new_backup_id()
    service = BackupService(settings, Database(settings.database_url))
    try:
        service.write_snapshot(live, safety, "pre-restore", actor)
    except (sqlite3.DatabaseError, GdosError) as exc:
        print(
            f"gdos-master restore: the current database cannot be snapshotted ({exc}); "
            "keeping a raw copy of its files",
            file=sys.stderr,
        )
        service.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for suffix in ("", "-wal"):
            if Path(f"{live}{suffix}").exists():
                shutil.copy2(f"{live}{suffix}", service.dir / f"{safety}.db{suffix}")
        meta = {"id": safety, "kind": "pre-restore", "created_by": actor, "raw_copy": True}
        (service.dir / f"{safety}.json").write_text(json.dumps(meta))
    return safety


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.db_url and not args.db_url.startswith("sqlite"):
        print(
            "gdos-master restore: this master's database is not SQLite; restore it with the "
            "database's own tools (pg_restore for PostgreSQL)",
            file=sys.stderr,
        )
        return 2
    db_path = Path(args.db_path) if args.db_path else None
    if args.db_url:  # sqlite:///path: the file it names
        db_path = Path(make_url(args.db_url).database or "ops_data.db")
    settings = Settings(
        data_dir=args.data_dir.absolute(),
        db_path=db_path,
        backup_dir=Path(args.backup_dir) if args.backup_dir else None,
    )
    try:
        actor = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        actor = "cli"
    try:
        revision, safety = restore(args.file, settings, actor)
    except GdosError as exc:
        print(f"gdos-master restore: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gdos-master restore: {exc.strerror or exc} ({exc.filename})", file=sys.stderr)
        return 2
    print(f"restored {args.file} into {settings.sqlite_path} (schema {revision})")
    if safety:
        print(f"the previous database is kept as backup {safety} in {settings.backup_path}")
    print("start the master; its agents reconnect and reconcile with the restored state")
    return 0
