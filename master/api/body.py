"""A request body read straight from ASGI `receive`, chunk by chunk, knowing how it ended; or,
for an upload's spool, straight from its socket (master/server.py's `DirectBody`)."""

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.types import Receive

from master.server import DIRECT_BODY
from master.storage.socket_reader import SocketReader, can_poll
from master.storage.spool import Spool
from protocol.errors import ErrorCode, GdosError

DISCARD_CAP = 64 << 20


class Body:
    def __init__(self, receive: Receive, scope: Mapping[str, Any] | None = None) -> None:
        self._receive = receive
        extensions = (scope or {}).get("extensions") or {}
        self._direct = extensions.get(DIRECT_BODY) if can_poll() else None
        self.done = False  # the last chunk arrived, or the client went away
        self.cut = False  # the client went away first (or stalled)
        self.stalled = False  # a direct read waited longer than its idle timeout

    async def next(self) -> bytes | None:
        """The next non-empty chunk, or None at the end."""
        while not self.done:
            message = await self._receive()
            if message["type"] != "http.request":
                self.done = self.cut = True
                return None
            if not message.get("more_body", False):
                self.done = True
            chunk: bytes = message.get("body", b"")
            if chunk:
                return chunk
        return None

    async def pour(self, spool: Spool, idle_timeout: float) -> bool:
        """Feed the whole body to `spool` straight from the socket (each wait for bytes at most
        `idle_timeout` s); False when this body cannot be read so (then use `next`). A body
        that stalls ends as cut, with `stalled` set."""
        direct = self._direct
        taken = direct.take() if direct is not None and not self.done else None
        if direct is None or taken is None:
            return False
        fd, pending, left = taken
        try:
            reader = SocketReader(fd, pending, left, idle_timeout)
        except OSError:
            os.close(fd)
            direct.give_back(0, close=False)
            return False
        try:
            await spool.pour(reader)
        except BaseException:
            reader.stop()
            spool.settle_now()  # the threads are done with the socket before it is released
            raise
        finally:
            reader.close()
            ended = reader.left <= 0 and not reader.cut
            direct.give_back(reader.read, close=not ended and (reader.cut or reader.stalled))
        self.stalled = reader.stalled
        self.cut = reader.cut or reader.stalled
        self.done = self.cut or reader.left <= 0
        return True

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every chunk; a client that goes away half way is an error, not a short body."""
        while (chunk := await self.next()) is not None:
            yield chunk
        if self.cut:
            raise GdosError(ErrorCode.BAD_REQUEST, "the client went away before the body ended")

    async def discard(self, cap: int = DISCARD_CAP) -> None:
        """Drop what is left of a refused body (up to `cap`), so that clients which only read
        the answer once their body is sent still get it."""
        seen = 0
        while seen <= cap and (chunk := await self.next()) is not None:
            seen += len(chunk)
