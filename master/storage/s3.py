"""Packages as objects in a MinIO/S3 bucket: `packages/<sha[:2]>/<sha>.zip`.

Uploads still arrive on local disk (`incoming_dir`) where they are hashed and validated; only a
complete, valid file goes to the bucket, streamed from disk in parts. Agents download through
presigned URLs, so the master is not in the data path. The minio client is synchronous: every
call runs in a worker thread.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from master.lean_imports import load_minio

load_minio()  # before any minio import: without its admin client

from minio import Minio  # noqa: E402
from minio.error import MinioException, S3Error  # noqa: E402
from urllib3.exceptions import HTTPError  # noqa: E402

from protocol.errors import ErrorCode, GdosError  # noqa: E402

log = logging.getLogger(__name__)

PART_SIZE = 16 << 20  # memory per part in flight while a package goes to the bucket
PARALLEL_PARTS = 2
_CHUNK = 1 << 20
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}

T = TypeVar("T")


def _unreachable(endpoint: str, exc: Exception) -> GdosError:
    return GdosError(
        ErrorCode.STORAGE_ERROR,
        f"the object store at {endpoint} failed: {exc}",
        {"endpoint": endpoint},
    )


class S3Store:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        incoming: Path,
        secure: bool = False,
        region: str = "us-east-1",
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        # With the region given, presigning is pure computation (no request to find it).
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._incoming = incoming
        self._incoming.mkdir(parents=True, exist_ok=True)

    @property
    def incoming_dir(self) -> Path:
        return self._incoming

    @staticmethod
    def key(sha256: str) -> str:
        return f"packages/{sha256[:2]}/{sha256}.zip"

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (MinioException, HTTPError, ValueError) as exc:
            raise _unreachable(self.endpoint, exc) from None

    async def open(self) -> None:
        """Check the credentials and create the bucket if it is missing."""
        if not await self._call(self.client.bucket_exists, self.bucket):
            try:
                await asyncio.to_thread(self.client.make_bucket, self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise _unreachable(self.endpoint, exc) from None
            log.info("created bucket %s on %s", self.bucket, self.endpoint)

    async def put(self, tmp_path: Path, sha256: str) -> None:
        try:
            if not await self.exists(sha256):  # same bytes already stored: nothing to send
                await self._call(
                    self.client.fput_object,
                    self.bucket,
                    self.key(sha256),
                    str(tmp_path),
                    content_type="application/zip",
                    part_size=PART_SIZE,
                    num_parallel_uploads=PARALLEL_PARTS,
                )
        finally:
            tmp_path.unlink(missing_ok=True)

    async def exists(self, sha256: str) -> bool:
        try:
            await asyncio.to_thread(self.client.stat_object, self.bucket, self.key(sha256))
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise _unreachable(self.endpoint, exc) from None
        except (MinioException, HTTPError) as exc:
            raise _unreachable(self.endpoint, exc) from None
        return True

    async def delete(self, sha256: str) -> None:
        await self._call(self.client.remove_object, self.bucket, self.key(sha256))

    def local_path(self, sha256: str) -> Path | None:
        return None

    async def presigned_url(self, sha256: str, expires: float) -> str | None:
        return await self._call(
            self.client.presigned_get_object,
            self.bucket,
            self.key(sha256),
            expires=timedelta(seconds=expires),
        )

    def stream(self, sha256: str) -> AsyncIterator[bytes]:
        return self.stream_key(self.key(sha256))

    async def stream_key(self, key: str) -> AsyncIterator[bytes]:
        response = await self._call(self.client.get_object, self.bucket, key)
        try:
            while chunk := await asyncio.to_thread(response.read, _CHUNK):
                yield chunk
        finally:
            response.close()
            response.release_conn()
