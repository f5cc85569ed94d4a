"""Resumable (tus) uploads any master can continue: several masters on PostgreSQL and S3.

The bytes go to the bucket as an S3 multipart upload as they arrive (master/services/
upload_parts.py, master/storage/multipart.py); the upload's row is the truth every master reads:
its offset, the parts recorded so far, the tail object, and which request writes it now
(master/services/upload_claims.py: a lease taken by compare-and-set, so a second PATCH on any
master is told 409). When the last byte is recorded the parts are assembled into one object,
which is read back to the master's disk: its sha256 and CRC marks are computed on the way
(hashlib cannot hand a running hash to another master) and the zip is validated exactly as a
one-shot upload's. A valid package is copied inside the bucket to its key; nothing of a
rejected one is kept. The same service API as master/services/uploads.py.
"""

import asyncio
import logging
import os
import time
from contextlib import suppress
from pathlib import Path

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.services import packages as package_service
from master.services.upload_claims import POLL, Claim, held, holding, taken_over
from master.services.upload_parts import PartSink
from master.services.uploads import (
    COMPLETE,
    FAILED,
    HEAD_LOCK_WAIT,
    PATCH_LOCK_WAIT,
    RECEIVING,
    BodySource,
    UploadRows,
    check_patch,
)
from master.storage.multipart import Multipart, PartsOverwritten
from master.storage.s3 import S3Store
from protocol.errors import ErrorCode, GdosError

log = logging.getLogger(__name__)


class SharedUploads(UploadRows):
    def __init__(self, db: Database, store: S3Store, settings: Settings) -> None:
        super().__init__(db, store, settings)
        self.parts = Multipart(store)
        self.patch_wait = PATCH_LOCK_WAIT
        self.head_wait = HEAD_LOCK_WAIT

    def offset_of(self, row: models.PackageUpload) -> int:
        return row.offset if row.state == RECEIVING else row.length

    # -- creating and removing ----------------------------------------------------------------

    def create(self, length: int, meta: dict[str, str], user: str) -> models.PackageUpload:
        # The disk holds the whole package once, when it is read back to be validated.
        self.check_new(length, self.store.incoming_dir)
        row = self.new_row(length, meta, user, parts=[], tail_size=0)
        # The row first: whatever expiry finds in the bucket without a row is a leftover.
        with self.db.session() as s:
            s.add(row)
            s.commit()
            try:
                row.s3_upload = self.parts.create(row.id)
            except GdosError:
                s.delete(row)
                s.commit()
                raise
            s.commit()
        log.info("upload %s created by %s: %d bytes (in the bucket)", row.id, user, length)
        return row

    async def terminate(self, upload_id: str) -> None:
        self.load(upload_id)
        async with holding(self.db, upload_id, self.patch_wait) as claim:
            row = self.load(upload_id)
            await self.parts.remove(row.id, row.s3_upload)
            claim.delete()

    async def drop_expired(self, row: models.PackageUpload) -> bool:
        """Remove an expired upload, its parts and objects, unless a writer holds it."""
        claim = Claim(self.db, row.id)
        if not claim.try_take():
            return False
        try:
            await self.parts.remove(row.id, row.s3_upload)
        except BaseException:
            claim.release()
            raise
        return claim.delete()

    async def settled_offset(self, row: models.PackageUpload) -> int:
        """The offset once a PATCH still going on (on any master) has recorded what it got,
        waiting `head_wait` seconds at most."""
        deadline = time.monotonic() + self.head_wait
        row = self.load(row.id)
        while held(row, self.db.now()) and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            row = self.load(row.id)
        return self.offset_of(row)

    # -- writing ------------------------------------------------------------------------------

    async def write(
        self, upload_id: str, offset: int, declared: int | None, body: BodySource
    ) -> models.PackageUpload:
        """Append one PATCH body at `offset`; returns the row (finished if this was the end)."""
        self.load(upload_id)
        async with holding(self.db, upload_id, self.patch_wait) as claim:
            row = self.load(upload_id)
            if check_patch(row, offset, row.offset, declared):
                return row
            if row.s3_upload is None:
                raise GdosError(
                    ErrorCode.INVALID_STATE,
                    f"upload {upload_id} was never set up in the bucket; start a new one",
                )
            if declared != 0:
                await self._receive(row, claim, body)
            row = self.load(upload_id)
            if row.state == RECEIVING and row.offset == row.length:
                return await self._finish(row, claim)
            return row

    async def _receive(self, row: models.PackageUpload, claim: Claim, body: BodySource) -> None:
        tail = await self.parts.read(row.tail_key) if row.tail_key else b""
        if len(tail) != row.tail_size:
            raise GdosError(
                ErrorCode.STORAGE_ERROR,
                f"the bucket holds {len(tail)} bytes of upload {row.id}'s tail, not "
                f"{row.tail_size}; upload the package again",
            )
        sink = PartSink(self.parts, claim, row, tail, self.ttl)
        received = row.offset
        try:
            while (chunk := await body.next()) is not None:
                received += len(chunk)
                if received > row.length:
                    break
                await sink.feed(chunk)
            if received > row.length:
                await sink.undo()
                await body.discard()
                raise GdosError(
                    ErrorCode.TOO_LARGE,
                    f"the body went past the upload's length of {row.length} bytes; "
                    "nothing of this PATCH was kept",
                    {"length": row.length, "offset": row.offset},
                )
            await sink.close()  # after a cut too: whatever arrived is kept
        except GdosError as exc:
            await sink.abandon()
            if exc.code != ErrorCode.TOO_LARGE:
                await body.discard()
            raise
        except BaseException:
            await sink.abandon()
            raise
        if body.cut:
            log.info("upload %s: client went away at %d bytes; keeping them", row.id, received)

    # -- finishing ----------------------------------------------------------------------------

    async def _finish(self, row: models.PackageUpload, claim: Claim) -> models.PackageUpload:
        """Assemble, read back, validate and register (with the upload's claim held)."""
        try:
            await self.parts.complete(row.id, row.s3_upload or "", row.parts or [])
        except PartsOverwritten as exc:
            log.warning("upload %s: the bucket refused its parts: %s", row.id, exc)
            refused = GdosError(
                ErrorCode.STORAGE_ERROR,
                "the upload's parts in the bucket changed after they were received "
                "(two masters wrote them); upload the package again",
            )
            return await self._refuse(row, claim, refused)
        received = await package_service.receive_to_file(
            self.parts.stream(row.id), self.store.incoming_dir, row.length
        )
        if received.size != row.length:
            os.unlink(received.path)
            raise GdosError(
                ErrorCode.STORAGE_ERROR,
                f"the bucket returned {received.size} of upload {row.id}'s {row.length} bytes",
            )

        def mark_complete(pkg: models.Package) -> None:
            up = s.get(models.PackageUpload, row.id, with_for_update=True)
            if up is None or up.writer != claim.token:
                raise taken_over(row.id)
            now = self.db.now()
            up.state, up.package_id, up.offset = COMPLETE, pkg.id, row.length
            up.updated_at, up.expires_at = now, now + self.ttl

        async def put(path: Path, sha256: str) -> None:
            await self.parts.adopt(row.id, sha256)
            path.unlink(missing_ok=True)

        with self.db.session() as s:
            try:
                pkg = await package_service.register_file(
                    s,
                    self.store,
                    received.path,
                    received.sha256,
                    received.size,
                    row.created_by,
                    before_commit=mark_complete,
                    marks=received.marks,
                    put=put,
                )
            except GdosError as exc:
                if claim.lost:
                    raise
                log.info("upload %s refused: %s", row.id, exc.message)
                return await self._refuse(row, claim, exc)
        log.info("upload %s registered as package %s (%s)", row.id, pkg.id, received.sha256)
        with suppress(GdosError):  # the package has its own copy; expiry retries the rest
            await self.parts.remove(row.id, None)
        return self.load(row.id)

    async def _refuse(
        self, row: models.PackageUpload, claim: Claim, error: GdosError
    ) -> models.PackageUpload:
        """Remember why the upload was refused; keep nothing of it in the bucket."""
        claim.record(self.ttl, state=FAILED, error=error.to_wire(), tail_key=None, tail_size=0)
        with suppress(GdosError):
            await self.parts.remove(row.id, row.s3_upload)
        return self.load(row.id)

    async def finish_if_complete(self, row: models.PackageUpload) -> models.PackageUpload:
        """Register an upload whose bytes all arrived but whose master stopped before it could."""
        if row.state != RECEIVING or row.offset != row.length:
            return row
        async with holding(self.db, row.id, self.patch_wait) as claim:
            row = self.load(row.id)
            if row.state == RECEIVING and row.offset == row.length:
                return await self._finish(row, claim)
            return row
