"""One writer per resumable upload; a second request waits a little for the first to wind down."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from protocol.errors import ErrorCode, GdosError


class _Entry:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class UploadLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str, wait: float) -> AsyncIterator[None]:
        entry = self._entries.setdefault(upload_id, _Entry())
        entry.users += 1
        try:
            try:
                await asyncio.wait_for(entry.lock.acquire(), wait)
            except TimeoutError:
                raise GdosError(
                    ErrorCode.CONFLICT,
                    f"upload {upload_id} is busy with another request; retry in a moment",
                ) from None
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._entries.pop(upload_id, None)

    def busy(self, upload_id: str) -> bool:
        return upload_id in self._entries

    async def settled(self, upload_id: str, wait: float) -> None:
        """Wait, up to `wait` seconds, for a writer still draining (a cut connection) to finish."""
        entry = self._entries.get(upload_id)
        if entry is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await entry.lock.acquire()
                    entry.lock.release()
