"""Package uploads: one-shot streamed, or resumable over tus 1.0 (API.md, Packages)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from console.client.errors import ClientError, parse
from console.client.transport import CHUNK, Transport
from protocol.rest import PackageOut, UploadOut

Progress = Callable[[int, int], None]  # (bytes sent, total bytes)
# Bytes per PATCH. Each PATCH costs a round trip and the master's pipeline a drain; a cut one
# loses nothing (the master keeps what arrived, HEAD says where to go on).
TUS_CHUNK = 64 << 20
TUS = {"Tus-Resumable": "1.0.0"}


class Uploads(Transport):
    async def upload_package(
        self, path: Path, progress: Progress | None = None, retries: int = 3
    ) -> PackageOut:
        """One-shot streamed upload; restarted from the beginning when the connection drops."""
        size = path.stat().st_size
        for attempt in range(retries + 1):
            try:
                resp = await self.request(
                    "POST",
                    "/packages",
                    content=read_chunks(path, 0, progress, size),
                    headers={"Content-Type": "application/zip", "Content-Length": str(size)},
                )
                return parse(PackageOut, resp.json())
            except ClientError as exc:
                if not exc.unreachable or attempt == retries:
                    raise
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def tus_available(self) -> bool:
        """Whether this master speaks tus on /packages/uploads (API.md resumable upload)."""
        try:
            resp = await self.request("OPTIONS", "/packages/uploads")
        except ClientError as exc:
            if exc.endpoint_missing or exc.status in (400, 404, 405, 501):
                return False
            raise
        return "tus-version" in resp.headers or "tus-resumable" in resp.headers

    async def uploads(self) -> list[UploadOut]:
        """Resumable uploads in progress and recently finished, newest first."""
        return await self._list("/packages/uploads", UploadOut)

    async def cancel_upload(self, location: str) -> None:
        """Abandon a resumable upload (its URL or path) and free its space on the master."""
        await self.request("DELETE", absolute_path(location), absolute=True, headers=TUS)

    async def tus_upload(
        self,
        path: Path,
        progress: Progress | None = None,
        *,
        resume_url: str | None = None,
        on_created: Callable[[str], None] | None = None,
        retries: int = 8,
        chunk_size: int = TUS_CHUNK,
        metadata: dict[str, str] | None = None,
    ) -> PackageOut:
        """Resumable upload (tus 1.0): a dropped connection resumes from the server's offset.
        `metadata` goes into Upload-Metadata beside the file name (shown in `uploads()`)."""
        size = path.stat().st_size
        url = resume_url
        if url is None:
            url = await self._tus_create(path, size, metadata)
            if on_created:
                on_created(url)
        failures = 0
        offset = await self._tus_offset(url)
        while offset < size:
            end = min(size, offset + chunk_size)
            try:
                resp = await self.request(
                    "PATCH",
                    url,
                    absolute=True,
                    content=read_chunks(path, offset, progress, size, end),
                    headers={
                        **TUS,
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                        "Content-Length": str(end - offset),
                    },
                )
                offset = int(resp.headers.get("Upload-Offset", end))
                failures = 0
            except ClientError as exc:
                if not (exc.unreachable or exc.status == 409) or failures >= retries:
                    raise
                failures += 1
                await asyncio.sleep(min(10.0, 0.25 * 2**failures))
                offset = await self._tus_offset(url, retries)
        if progress:
            progress(size, size)
        return parse(PackageOut, (await self.request("GET", url, absolute=True)).json())

    async def _tus_create(self, path: Path, size: int, metadata: dict[str, str] | None) -> str:
        meta = ",".join(
            f"{key} {base64.b64encode(value.encode()).decode()}"
            for key, value in {"filename": path.name, **(metadata or {})}.items()
        )
        resp = await self.request(
            "POST",
            "/packages/uploads",
            headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": meta},
        )
        return absolute_path(resp.headers["Location"])

    async def _tus_offset(self, url: str, retries: int = 0) -> int:
        for attempt in range(retries + 1):
            try:
                resp = await self.request("HEAD", url, absolute=True, headers=TUS)
                return int(resp.headers.get("Upload-Offset", "0"))
            except ClientError as exc:
                if not exc.unreachable or attempt == retries:
                    raise
                await asyncio.sleep(min(10.0, 0.25 * 2 ** (attempt + 1)))
        raise AssertionError("unreachable")  # pragma: no cover


def absolute_path(location: str) -> str:
    """tus `Location` may be absolute or a path; requests go through our base URL either way."""
    if location.startswith(("http://", "https://")):
        return httpx.URL(location).raw_path.decode()
    return location


async def read_chunks(
    path: Path, start: int, progress: Progress | None, total: int, end: int | None = None
) -> AsyncIterator[bytes]:
    """The bytes [start, end) of `path`, read off the event loop, reporting progress."""
    end = total if end is None else end
    sent = start
    with open(path, "rb") as f:
        f.seek(start)
        while sent < end:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, end - sent))
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
            if progress:
                progress(sent, total)
