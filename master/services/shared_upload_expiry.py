"""The cleanup of uploads kept in the bucket (master/services/shared_uploads.py): expired ones
are aborted (their multipart upload and tail objects removed) with their rows, leftovers under
`tus/` that no row names are removed once older than the TTL, and uploads whose bytes all
arrived before their master stopped are registered. Every master may run it: removing an upload
takes its claim first, so two masters never remove or finish the same one."""

import contextlib
import logging

from sqlalchemy import select

from master.db import models
from master.services.shared_uploads import SharedUploads
from master.services.upload_claims import held
from master.services.upload_expiry import remove_stale_files
from master.services.uploads import RECEIVING
from protocol.errors import GdosError

log = logging.getLogger(__name__)


async def expire(uploads: SharedUploads) -> int:
    """One pass; returns how many uploads, bucket leftovers and files it removed."""
    found = await uploads.parts.leftovers()  # listed before the rows are read: see create()
    now = uploads.db.now()
    with uploads.db.session() as s:
        rows = list(s.scalars(select(models.PackageUpload)))
    known = {r.id for r in rows}
    removed = 0
    for row in rows:
        if row.expires_at < now and not held(row, now):
            log.info("upload %s expired (%s)", row.id, row.state)
            if await uploads.drop_expired(row):
                removed += 1
    orphans = [f for f in found if f.upload_id not in known and f.since < now - uploads.ttl]
    if orphans:
        log.info("removing %d leftovers of unknown uploads from the bucket", len(orphans))
        await uploads.parts.abort_and_delete(orphans)
        removed += len(orphans)
    removed += remove_stale_files(uploads.store.incoming_dir, now - uploads.ttl)
    for row in rows:
        if (
            row.state == RECEIVING
            and row.offset == row.length
            and row.expires_at >= now
            and not held(row, now)
        ):
            with contextlib.suppress(GdosError):
                await uploads.finish_if_complete(row)
    return removed
