"""The cleanup of resumable uploads: expired ones, orphan partial files, stale one-shot
leftovers; and uploads whose bytes all arrived before a master stopped are registered."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

from master.db import models
from master.services.leader import Lease
from master.services.uploads import RECEIVING, UploadRows, UploadService
from protocol.errors import GdosError

log = logging.getLogger(__name__)


async def expire(uploads: UploadService) -> int:
    """One pass; returns how many uploads and files it removed."""
    now = uploads.db.now()  # the clock expiry times were written with
    files = list(uploads.dir.glob("*.part"))  # listed before the rows are read: see create()
    removed = 0
    with uploads.db.session() as s:
        rows = list(s.scalars(select(models.PackageUpload)))
    known = {r.id for r in rows}
    # No await until the orphans are gone: nothing can change under this snapshot.
    for row in rows:
        if row.expires_at < now and not uploads.locks.busy(row.id):
            log.info("upload %s expired (%s)", row.id, row.state)
            uploads.forget(row.id)
            removed += 1
    for f in files:
        if f.stem not in known:
            f.unlink(missing_ok=True)
            removed += 1
    removed += remove_stale_files(uploads.store.incoming_dir, now - uploads.ttl)
    for row in rows:
        if row.state == RECEIVING and row.expires_at >= now and not uploads.locks.busy(row.id):
            with contextlib.suppress(GdosError):
                await uploads.finish_if_complete(row)
    return removed


def remove_stale_files(incoming: Path, before: float) -> int:
    """One-shot uploads (and read-backs of shared ones) write `upload-*.part` and remove them
    themselves; a crash may not."""
    removed = 0
    for f in incoming.glob("upload-*.part"):
        with contextlib.suppress(OSError):
            if f.stat().st_mtime < before:
                f.unlink()
                removed += 1
    return removed


async def expire_forever(
    uploads: UploadRows, one_pass: Callable[[], Awaitable[int]], lease: Lease
) -> None:
    """Run `one_pass` (an `expire` of the uploads' kind) every tenth of the TTL, a minute at
    most, while this master leads (several masters: one cleans up for all)."""
    interval = min(60.0, max(0.2, uploads.ttl / 10))
    while True:
        try:
            if lease.held():
                await one_pass()
        except Exception:
            log.exception("upload cleanup failed; trying again later")
        await asyncio.sleep(interval)
