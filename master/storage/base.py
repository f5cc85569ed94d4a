"""The interface every package store implements."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class PackageStore(Protocol):
    @property
    def incoming_dir(self) -> Path:
        """A local directory for uploads in progress (on the same disk as the store when local)."""
        ...

    async def put(self, tmp_path: Path, sha256: str) -> None:
        """Take ownership of a complete, validated file; `tmp_path` is gone afterwards."""
        ...

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> None: ...

    def local_path(self, sha256: str) -> Path | None:
        """A path to serve directly, if the store is a local directory."""
        ...

    async def presigned_url(self, sha256: str, expires: float) -> str | None:
        """A URL agents can download from without the master (object stores only)."""
        ...

    def stream(self, sha256: str) -> AsyncIterator[bytes]: ...
