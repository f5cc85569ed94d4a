"""Resumable package uploads: the tus 1.0 protocol's state, kept so a cut costs only the retry.

Each upload is a row in `package_uploads` plus a partial file `<incoming>/tus/<id>.part`. The
file's size is the upload's offset: a byte counts once the kernel has it, so a PATCH cut half
way keeps what arrived and a master restart loses nothing. When the last byte lands the file is
validated and registered exactly like a one-shot upload (nothing is kept from a rejected one);
the row then remembers the package or the error for the client's `GET`. Abandoned uploads
expire after `--upload-ttl` seconds (master/services/upload_expiry.py removes them).
"""

import asyncio
import base64
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.services import packages as package_service
from master.services.upload_locks import UploadLocks
from master.storage.base import PackageStore
from master.storage.spool import Spool, hash_prefix, new_hash, new_marks
from protocol.crc import CrcMarks
from protocol.errors import ErrorCode, GdosError

if TYPE_CHECKING:
    from hashlib import _Hash

log = logging.getLogger(__name__)

RECEIVING, COMPLETE, FAILED = "receiving", "complete", "failed"
PATCH_LOCK_WAIT = 5.0  # a PATCH waits this long for one still finishing on the same upload
HEAD_LOCK_WAIT = 2.0
MAX_METADATA_KEYS = 32


class BodySource(Protocol):
    """A request body read chunk by chunk (master/api/body.py's `Body`)."""

    cut: bool  # the client went away before the end

    async def next(self) -> bytes | None: ...
    async def discard(self) -> None: ...


@runtime_checkable
class DirectBodySource(BodySource, Protocol):
    """A body that may also be read straight from its socket by a spool (`Body.pour`)."""

    stalled: bool  # sent nothing for the idle timeout (then `cut` too)

    async def pour(self, spool: Spool, idle_timeout: float) -> bool: ...


# tus: comma-separated `key base64value` pairs; keys are printable ASCII without spaces or commas.
_KEY = r"[!-+\--~]+"
_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
METADATA_PATTERN = rf"^(?: *{_KEY}(?: +{_B64})? *(?:, *{_KEY}(?: +{_B64})? *)*)?$"


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata: filename ZGVtby56aXA=,note` -> {"filename": "demo.zip", "note": ""}."""
    meta: dict[str, str] = {}
    if not header or not header.strip():
        return meta
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        value = value.strip()
        if not re.fullmatch(_KEY, key) or key in meta:
            raise bad_request(f"Upload-Metadata has an invalid or repeated key {key!r}")
        try:
            meta[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except ValueError:  # bad base64 (binascii.Error), non-ASCII input, or not UTF-8
            raise bad_request(
                f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text"
            ) from None
        if len(meta) > MAX_METADATA_KEYS:
            raise bad_request(f"Upload-Metadata has more than {MAX_METADATA_KEYS} keys")
    return meta


def encode_metadata(meta: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in meta.items()
    )


def bad_request(message: str) -> GdosError:
    return GdosError(ErrorCode.BAD_REQUEST, message)


def not_found(upload_id: str) -> GdosError:
    return GdosError(
        ErrorCode.NOT_FOUND,
        f"no upload {upload_id} (unknown, finished long ago, or expired); start a new one",
    )


def stored_error(row: models.PackageUpload) -> GdosError:
    err = row.error or {}
    code = err.get("code", ErrorCode.INTERNAL)
    try:
        code = ErrorCode(code)
    except ValueError:
        code = ErrorCode.INTERNAL
    return GdosError(code, str(err.get("message", "the upload failed")), err.get("details") or {})


def check_patch(row: models.PackageUpload, offset: int, current: int, declared: int | None) -> bool:
    """Refuse a PATCH at `offset` of `declared` bytes that does not fit the upload, which has
    `current` bytes; True for a retried last PATCH whose answer was lost (answer the row)."""
    if row.state != RECEIVING:
        if offset == row.length and not declared:
            return True
        raise GdosError(
            ErrorCode.CONFLICT,
            f"upload {row.id} is already {row.state}",
            {"offset": row.length, "state": row.state},
        )
    if offset != current:
        raise GdosError(
            ErrorCode.CONFLICT,
            f"Upload-Offset is {offset} but the master has {current} bytes; "
            "ask with HEAD and resume from there",
            {"offset": current},
        )
    if declared is not None and offset + declared > row.length:
        raise GdosError(
            ErrorCode.TOO_LARGE,
            f"this PATCH would go past the upload's length of {row.length} bytes",
            {"length": row.length, "offset": offset},
        )
    return False


class UploadRows:
    """What both kinds of upload service share: the rows and the checks of a new upload."""

    def __init__(self, db: Database, store: PackageStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings

    @property
    def ttl(self) -> float:
        return self.settings.upload_ttl

    def load(self, upload_id: str) -> models.PackageUpload:
        with self.db.session() as s:
            row = s.get(models.PackageUpload, upload_id)
        if row is None or row.expires_at < self.db.now():
            raise not_found(upload_id)
        return row

    def listing(self) -> list[models.PackageUpload]:
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(models.PackageUpload)
                    .where(models.PackageUpload.expires_at >= self.db.now())
                    .order_by(models.PackageUpload.created_at.desc())
                )
            )

    def check_new(self, length: int, incoming: Path) -> None:
        """Refuse an upload that is too large, empty, or bigger than the free disk."""
        limit = self.settings.max_package_size
        if length > limit:
            raise package_service.too_large(limit)
        if length == 0:
            raise GdosError(ErrorCode.INVALID_PACKAGE, "the upload is empty; send the zip file")
        free = shutil.disk_usage(incoming).free
        if free < length:
            raise GdosError(
                ErrorCode.STORAGE_FULL,
                f"the master has {free} bytes free for uploads and this one needs {length}; "
                "free space or move --upload-dir",
                {"free": free, "length": length},
            )

    def new_row(
        self, length: int, meta: dict[str, str], user: str, **extra: Any
    ) -> models.PackageUpload:
        now = self.db.now()
        return models.PackageUpload(
            id=secrets.token_hex(16),
            length=length,
            offset=0,
            meta=meta,
            state=RECEIVING,
            created_by=user,
            created_at=now,
            updated_at=now,
            expires_at=now + self.ttl,
            **extra,
        )


class UploadService(UploadRows):
    def __init__(self, db: Database, store: PackageStore, settings: Settings) -> None:
        super().__init__(db, store, settings)
        self.dir = store.incoming_dir / "tus"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.locks = UploadLocks()
        # Running sha256 and CRC marks of each upload's file, and the offset they stand at.
        self._hashes: dict[str, tuple[int, _Hash, CrcMarks]] = {}

    def path(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.part"

    def received(self, upload_id: str) -> int:
        try:
            return self.path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    def offset_of(self, row: models.PackageUpload) -> int:
        return self.received(row.id) if row.state == RECEIVING else row.length

    # -- creating and removing ----------------------------------------------------------------

    def create(self, length: int, meta: dict[str, str], user: str) -> models.PackageUpload:
        self.check_new(length, self.dir)
        row = self.new_row(length, meta, user)
        with self.db.session() as s:
            s.add(row)
            s.commit()
        try:
            # The row exists before the file: a file without a row is an orphan (see expire).
            self.path(row.id).touch(mode=0o600, exist_ok=False)
        except OSError as exc:
            self.forget(row.id)
            raise package_service.storage_error(exc) from None
        log.info("upload %s created by %s: %d bytes", row.id, user, length)
        return row

    async def terminate(self, upload_id: str) -> None:
        self.load(upload_id)
        async with self.locks.hold(upload_id, PATCH_LOCK_WAIT):
            self.forget(upload_id)

    def forget(self, upload_id: str) -> None:
        self.path(upload_id).unlink(missing_ok=True)
        self._hashes.pop(upload_id, None)
        with self.db.session() as s:
            row = s.get(models.PackageUpload, upload_id)
            if row is not None:
                s.delete(row)
                s.commit()

    async def settled_offset(self, row: models.PackageUpload) -> int:
        """The offset once a PATCH still draining (a cut connection) has written what it got."""
        await self.locks.settled(row.id, HEAD_LOCK_WAIT)
        return self.offset_of(self.load(row.id))

    # -- writing ------------------------------------------------------------------------------

    async def write(
        self, upload_id: str, offset: int, declared: int | None, body: BodySource
    ) -> models.PackageUpload:
        """Append one PATCH body at `offset`; returns the row (finished if this was the end)."""
        self.load(upload_id)
        async with self.locks.hold(upload_id, PATCH_LOCK_WAIT):
            row = self.load(upload_id)
            current = self.received(upload_id)
            if check_patch(row, offset, current, declared):
                return row
            if declared != 0:
                await self._receive(row, current, body)
            if self.received(upload_id) == row.length:
                return await self._finish(row)
            return self.load(upload_id)

    async def _digests_at(self, upload_id: str, offset: int) -> tuple["_Hash", CrcMarks]:
        cached = self._hashes.pop(upload_id, None)
        if cached is not None and cached[0] == offset:
            return cached[1], cached[2]
        if offset == 0:
            return new_hash(), new_marks()
        # After a restart: hash what is already on disk once, then carry on.
        return await asyncio.to_thread(hash_prefix, self.path(upload_id), offset)

    async def _receive(self, row: models.PackageUpload, start: int, body: BodySource) -> None:
        path = self.path(row.id)
        try:
            hasher, marks = await self._digests_at(row.id, start)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._storage_failure(row, exc) from None
        spool = Spool(fd, hasher, start, marks=marks)
        # A body that stalls reads as cut (master/api/body_limits.py): what arrived is kept.
        received = start
        try:
            # Straight from the socket when the server allows (the length is then checked).
            poured = isinstance(body, DirectBodySource) and await body.pour(
                spool, self.settings.body_timeout
            )
            if not poured:
                while (chunk := await body.next()) is not None:
                    received += len(chunk)
                    if received > row.length:
                        break
                    await spool.feed(chunk)
            await spool.drain()  # after a cut too: whatever arrived is kept
        except OSError as exc:
            spool.settle_now()
            os.close(fd)
            await body.discard()
            raise self._storage_failure(row, exc) from None
        except BaseException:
            spool.settle_now()  # the thread must be done with the fd before it closes
            os.close(fd)
            raise
        if body.cut:
            log.info("upload %s: client went away at %d bytes; keeping them", row.id, spool.offset)
        if received > row.length:
            os.ftruncate(fd, start)  # refuse the whole PATCH, not part of it
            os.close(fd)
            self._hashes.pop(row.id, None)
            await body.discard()
            raise GdosError(
                ErrorCode.TOO_LARGE,
                f"the body went past the upload's length of {row.length} bytes; "
                "nothing of this PATCH was kept",
                {"length": row.length, "offset": start},
            )
        os.close(fd)
        self._hashes[row.id] = (spool.offset, spool.hasher, marks)
        self._touch(row.id, spool.offset)

    def _touch(self, upload_id: str, offset: int) -> None:
        now = self.db.now()
        with self.db.session() as s:
            row = s.get(models.PackageUpload, upload_id)
            if row is not None:
                row.offset = offset
                row.updated_at = now
                row.expires_at = now + self.ttl
                s.commit()

    def _storage_failure(self, row: models.PackageUpload, exc: OSError) -> GdosError:
        """A full disk: drop the partial file (space back for everyone), remember why."""
        error = package_service.storage_error(exc)
        log.warning("upload %s failed: %s", row.id, exc)
        self.path(row.id).unlink(missing_ok=True)
        self._hashes.pop(row.id, None)
        self._mark_failed(row.id, error)
        return error

    def _mark_failed(self, upload_id: str, error: GdosError) -> None:
        now = self.db.now()
        try:
            with self.db.session() as s:
                row = s.get(models.PackageUpload, upload_id)
                if row is not None:
                    row.state = FAILED
                    row.error = error.to_wire()
                    row.updated_at = now
                    row.expires_at = now + self.ttl
                    s.commit()
        except Exception:  # the client still gets the error; the row expires eventually
            log.exception("could not record the failure of upload %s", upload_id)

    # -- finishing ----------------------------------------------------------------------------

    async def _finish(self, row: models.PackageUpload) -> models.PackageUpload:
        """Validate and register the complete file (called with the upload's lock held)."""
        path = self.path(row.id)
        try:
            hasher, marks = await self._digests_at(row.id, row.length)
        except OSError as exc:
            raise self._storage_failure(row, exc) from None
        self._hashes.pop(row.id, None)
        sha = hasher.hexdigest()

        def mark_complete(pkg: models.Package) -> None:
            up = s.get(models.PackageUpload, row.id, with_for_update=True)
            if up is not None:
                now = self.db.now()
                up.state, up.package_id, up.offset = COMPLETE, pkg.id, row.length
                up.updated_at, up.expires_at = now, now + self.ttl

        with self.db.session() as s:
            try:
                pkg = await package_service.register_file(
                    s,
                    self.store,
                    path,
                    sha,
                    row.length,
                    row.created_by,
                    before_commit=mark_complete,
                    marks=marks,
                )
            except GdosError as exc:
                log.info("upload %s refused: %s", row.id, exc.message)
                self._mark_failed(row.id, exc)
                return self.load(row.id)
        log.info("upload %s registered as package %s (%s)", row.id, pkg.id, sha)
        return self.load(row.id)

    async def finish_if_complete(self, row: models.PackageUpload) -> models.PackageUpload:
        """Register an upload whose bytes all arrived but whose master stopped before it could."""
        if row.state != RECEIVING or self.received(row.id) != row.length:
            return row
        async with self.locks.hold(row.id, PATCH_LOCK_WAIT):
            row = self.load(row.id)
            if row.state == RECEIVING and self.received(row.id) == row.length:
                return await self._finish(row)
            return row
