"""A resumable upload's bytes in the bucket, laid out as tusd's s3store lays them out.

Everything of upload `<id>` lives under `tus/<id>/`: an S3 multipart upload of
`tus/<id>/package.zip` whose parts are at least `MIN_PART` bytes (S3's rule for every part but
the last), and at most one small "tail" object of the bytes that did not fill a part yet. Any
master can continue the upload from these and the upload's row. minio's multipart calls are
its private methods (`_create_multipart_upload`, ...); they are synchronous, so each runs in a
worker thread here.
"""

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from master.lean_imports import load_minio

load_minio()  # before any minio import: without its admin client

from minio.commonconfig import ComposeSource  # noqa: E402
from minio.datatypes import Part  # noqa: E402
from minio.deleteobjects import DeleteObject  # noqa: E402
from minio.error import MinioException, S3Error  # noqa: E402
from urllib3.exceptions import HTTPError  # noqa: E402

from master.storage.s3 import S3Store  # noqa: E402
from protocol.errors import ErrorCode, GdosError  # noqa: E402

log = logging.getLogger(__name__)

PREFIX = "tus/"
MIN_PART = 5 << 20  # S3's smallest part but the last
PART_SIZE = 8 << 20  # what a master holds in memory per part, one filling and one in flight
MAX_PARTS = 10_000  # S3's most parts in one multipart upload

T = TypeVar("T")


def part_size_for(length: int) -> int:
    """Parts of `PART_SIZE`, larger when the upload would not fit in half of `MAX_PARTS` (the
    numbers a writer that lost the upload skips leave gaps)."""
    return max(PART_SIZE, -(-length // (MAX_PARTS // 2)))


@dataclass(frozen=True)
class Leftover:
    """Something under `tus/` in the bucket: a multipart upload (`s3_upload` set) or an object."""

    upload_id: str
    key: str
    s3_upload: str | None
    since: float  # UNIX seconds it was started or last written


class PartsOverwritten(Exception):
    """S3 refused to assemble the parts: one was written again after this master recorded it."""


class Multipart:
    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.client = store.client
        self.bucket = store.bucket

    @staticmethod
    def key(upload_id: str) -> str:
        return f"{PREFIX}{upload_id}/package.zip"

    @staticmethod
    def tail_key(upload_id: str, start: int, writer: str) -> str:
        """A new name for each tail, so a writer that lost the upload cannot overwrite the
        tail another writer recorded."""
        return f"{PREFIX}{upload_id}/tail-{start}-{writer}"

    def _failed(self, exc: Exception) -> GdosError:
        return GdosError(
            ErrorCode.STORAGE_ERROR,
            f"the object store at {self.store.endpoint} failed: {exc}",
            {"endpoint": self.store.endpoint},
        )

    def sync(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except (MinioException, HTTPError, ValueError) as exc:
            raise self._failed(exc) from None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self.sync, fn, *args)

    def create(self, upload_id: str) -> str:
        """Start the multipart upload (synchronous: uploads are created from a worker thread)."""
        headers = {"Content-Type": "application/zip"}
        return self.sync(
            self.client._create_multipart_upload, self.bucket, self.key(upload_id), headers
        )

    async def put_part(self, upload_id: str, s3_upload: str, number: int, data: bytes) -> str:
        """Upload one part; returns its ETag."""
        return await self._call(
            self.client._upload_part,
            self.bucket,
            self.key(upload_id),
            data,
            None,
            s3_upload,
            number,
        )

    async def complete(self, upload_id: str, s3_upload: str, parts: list[list[Any]]) -> None:
        """Assemble the parts into `key(upload_id)`. Done already (a finish retried after a
        master stopped half way) counts as done when the object is there."""
        listed = [Part(int(n), str(etag)) for n, _size, etag in parts]
        try:
            await asyncio.to_thread(
                self.client._complete_multipart_upload,
                self.bucket,
                self.key(upload_id),
                s3_upload,
                listed,
            )
        except S3Error as exc:
            if exc.code == "NoSuchUpload" and await self.exists(self.key(upload_id)):
                return
            if exc.code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise PartsOverwritten(str(exc)) from None
            raise self._failed(exc) from None
        except (MinioException, HTTPError, ValueError) as exc:
            raise self._failed(exc) from None

    async def exists(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self.client.stat_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise self._failed(exc) from None
        except (MinioException, HTTPError) as exc:
            raise self._failed(exc) from None
        return True

    async def put_tail(self, key: str, data: bytes) -> None:
        await self._call(self.client.put_object, self.bucket, key, io.BytesIO(data), len(data))

    async def read(self, key: str) -> bytes:
        """A whole (small) object: a tail."""

        def get() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await self._call(get)

    def stream(self, upload_id: str) -> AsyncIterator[bytes]:
        """The assembled upload, read back."""
        return self.store.stream_key(self.key(upload_id))

    async def adopt(self, upload_id: str, sha256: str) -> None:
        """Copy the assembled upload to its package key inside the store (no bytes through the
        master); the same bytes stored already are kept as they are."""
        if not await self.store.exists(sha256):
            source = ComposeSource(self.bucket, self.key(upload_id))
            await self._call(
                self.client.compose_object, self.bucket, self.store.key(sha256), [source]
            )

    async def remove(self, upload_id: str, s3_upload: str | None) -> None:
        """Abort the multipart upload and delete every object of the upload."""
        if s3_upload:
            await self._abort(self.key(upload_id), s3_upload)
        await self.abort_and_delete(await self.leftovers(f"{PREFIX}{upload_id}/"))

    async def _abort(self, key: str, s3_upload: str) -> None:
        try:
            await asyncio.to_thread(
                self.client._abort_multipart_upload, self.bucket, key, s3_upload
            )
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise self._failed(exc) from None
        except (MinioException, HTTPError, ValueError) as exc:
            raise self._failed(exc) from None

    async def delete(self, keys: list[str]) -> None:
        if not keys:
            return

        def remove() -> None:
            errors = self.client.remove_objects(self.bucket, [DeleteObject(k) for k in keys])
            for error in errors:  # the iterator sends the request
                log.warning("could not delete %s from the bucket: %s", error.name, error.message)

        await self._call(remove)

    async def leftovers(self, prefix: str = PREFIX) -> list[Leftover]:
        """The multipart uploads (one listing page: up to 1,000) and objects under `prefix`."""

        def listing() -> list[Leftover]:
            found: list[Leftover] = []
            page = self.client._list_multipart_uploads(self.bucket, prefix=prefix)
            for up in page.uploads:
                since = up.initiated_time.timestamp() if up.initiated_time else 0.0
                found.append(
                    Leftover(_upload_of(up.object_name), up.object_name, up.upload_id, since)
                )
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                name = obj.object_name or ""
                since = obj.last_modified.timestamp() if obj.last_modified else 0.0
                found.append(Leftover(_upload_of(name), name, None, since))
            return found

        return await self._call(listing)

    async def abort_and_delete(self, found: list[Leftover]) -> None:
        for item in found:
            if item.s3_upload:
                await self._abort(item.key, item.s3_upload)
        await self.delete([item.key for item in found if item.s3_upload is None])


def _upload_of(key: str) -> str:
    """`tus/<id>/...` -> `<id>`."""
    return key[len(PREFIX) :].split("/", 1)[0]
