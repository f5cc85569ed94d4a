"""Backups of the master's SQLite database: online snapshots, a catalogue, schedule and retention.

A backup is `<backup dir>/<id>.db` (a compact SQLite file that passed `integrity_check`) and a
`<id>.json` sidecar with its size, sha256, kind and schema revision. Ids are UTC timestamps
plus a random suffix, so they sort by time and can never name a path outside the directory.
Restoring one under the running master is master/services/restore.py.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from master.config import Settings
from master.db import sqlite_files
from master.db.session import Database
from master.services import audit
from protocol.errors import ErrorCode, GdosError
from protocol.rest import iso
from protocol.rest_records import BackupKind, BackupOut

log = logging.getLogger(__name__)

BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
RestoreHook = Callable[[], Awaitable[None] | None]


def new_backup_id(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def unsupported(db: Database) -> GdosError:
    dialect = db.url.split(":", 1)[0].split("+", 1)[0] or "another database"
    return GdosError(
        ErrorCode.UNSUPPORTED,
        f"this master keeps its data in {dialect}, not SQLite: back it up and restore it with "
        "the database's own tools (pg_dump and pg_restore for PostgreSQL)",
        {"database": dialect},
    )


class BackupService:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.dir = settings.backup_path
        self.restore_hooks: list[RestoreHook] = []  # run after a restore swapped the database
        self.restoring = asyncio.Lock()
        self._making = asyncio.Lock()

    # -- catalogue ----------------------------------------------------------------------------

    def live_file(self) -> Path:
        live = self.db.sqlite_file
        if live is None:
            raise unsupported(self.db)
        return live

    def path_of(self, backup_id: str) -> Path:
        path = self.dir / f"{backup_id}.db"
        if not BACKUP_ID.match(backup_id) or not path.is_file():
            raise GdosError(ErrorCode.NOT_FOUND, f"no backup {backup_id}")
        return path

    def read(self, backup_id: str) -> BackupOut:
        path = self.path_of(backup_id)
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(path.with_suffix(".json").read_text())
        st = path.stat()
        return BackupOut(
            id=backup_id,
            size=st.st_size,
            created_at=meta.get("created_at") or iso(st.st_mtime) or "",
            kind=meta.get("kind", "manual"),
            sha256=meta.get("sha256", ""),
            created_by=meta.get("created_by", ""),
            schema_revision=meta.get("schema_revision", ""),
        )

    def entries(self) -> list[BackupOut]:
        """Newest first."""
        if not self.dir.is_dir():
            return []
        ids = sorted(
            (p.stem for p in self.dir.glob("*.db") if BACKUP_ID.match(p.stem)), reverse=True
        )
        out = []
        for backup_id in ids:
            with contextlib.suppress(GdosError, OSError):  # deleted meanwhile
                out.append(self.read(backup_id))
        return out

    def delete(self, backup_id: str) -> None:
        path = self.path_of(backup_id)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def prune(self, keep: int) -> list[str]:
        """Delete scheduled backups beyond the newest `keep`; returns the deleted ids."""
        scheduled = [b for b in self.entries() if b.kind == "scheduled"]
        gone = []
        for old in scheduled[max(keep, 0) :]:
            with contextlib.suppress(GdosError, OSError):
                self.delete(old.id)
                gone.append(old.id)
        return gone

    def clean_partials(self) -> None:
        """Snapshots interrupted by a crash leave `.<id>.db.partial` files; drop them."""
        if self.dir.is_dir():
            for partial in self.dir.glob(".*.partial"):
                partial.unlink(missing_ok=True)

    # -- making one ---------------------------------------------------------------------------

    async def create(self, kind: BackupKind = "manual", created_by: str = "") -> BackupOut:
        live = self.live_file()
        async with self._making:
            backup_id = new_backup_id()
            try:
                meta = await asyncio.to_thread(
                    self.write_snapshot, live, backup_id, kind, created_by
                )
            except sqlite3.OperationalError as exc:
                full = "full" in str(exc)
                raise GdosError(
                    ErrorCode.STORAGE_FULL if full else ErrorCode.STORAGE_ERROR,
                    f"the backup could not be written to {self.dir}: {exc}",
                ) from None
            except OSError as exc:
                raise GdosError(
                    ErrorCode.STORAGE_ERROR,
                    f"the backup could not be written to {self.dir}: {exc.strerror or exc}",
                ) from None
        log.info("backup %s (%s, %d bytes) written", backup_id, kind, meta["size"])
        return self.read(backup_id)

    def write_snapshot(
        self, live: Path, backup_id: str, kind: str, created_by: str
    ) -> dict[str, Any]:
        """Blocking: snapshot, integrity check, sidecar. Use `create` from the event loop."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.dir / f".{backup_id}.db.partial"
        dest = self.dir / f"{backup_id}.db"
        try:
            sqlite_files.snapshot(live, partial)
            os.chmod(partial, 0o600)  # it holds password and credential hashes
            problems = sqlite_files.integrity_problems(partial)
            if problems:
                raise GdosError(
                    ErrorCode.STORAGE_ERROR,
                    f"the snapshot failed its integrity check ({problems[0]}); nothing was kept",
                    {"problems": problems},
                )
            meta = {
                "id": backup_id,
                "created_at": iso(time.time()),
                "kind": kind,
                "created_by": created_by,
                "size": partial.stat().st_size,
                "sha256": sha256_of(partial),
                "schema_revision": sqlite_files.schema_revision(partial),
                "integrity_check": "ok",
            }
            os.replace(partial, dest)
            _write_private(dest.with_suffix(".json"), json.dumps(meta, indent=1).encode())
            sqlite_files.fsync_path(self.dir, directory=True)
        finally:
            partial.unlink(missing_ok=True)
        return meta

    # -- schedule -----------------------------------------------------------------------------

    async def run_schedule(self, interval: float, keep: int) -> None:
        """Every `interval` seconds: a backup, then retention. Failures are logged and audited."""
        while True:
            await asyncio.sleep(interval)
            if self.restoring.locked():
                continue
            try:
                made = await self.create("scheduled", "scheduler")
                pruned = await asyncio.to_thread(self.prune, keep)
            except GdosError as exc:
                log.error("scheduled backup failed: %s", exc.message)
                self._audit("error", "", {"error": exc.message})
                continue
            self._audit("ok", made.id, {"size": made.size, "pruned": pruned})

    def _audit(self, result: str, backup_id: str, detail: dict[str, Any]) -> None:
        try:
            audit.record(
                self.db,
                actor="scheduler",
                action="scheduled_backup",
                target=f"backup={backup_id}" if backup_id else "",
                result=result,
                detail=detail,
            )
        except Exception:  # a failed audit write must not stop the schedule
            log.exception("could not audit the scheduled backup")
