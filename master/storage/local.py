"""Packages as files in a local directory: `<dir>/<sha[:2]>/<sha>.zip`."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

_CHUNK = 1 << 20


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._incoming = root / ".incoming"
        self._incoming.mkdir(exist_ok=True)

    @property
    def incoming_dir(self) -> Path:
        return self._incoming

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.zip"

    async def put(self, tmp_path: Path, sha256: str) -> None:
        dest = self._path(sha256)
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp_path, dest)  # same disk: atomic, and the same content twice is harmless

    async def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    async def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)

    async def presigned_url(self, sha256: str, expires: float) -> str | None:
        return None

    async def stream(self, sha256: str) -> AsyncIterator[bytes]:
        with open(self._path(sha256), "rb") as f:
            while chunk := await asyncio.to_thread(f.read, _CHUNK):
                yield chunk
