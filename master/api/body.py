"""A request body read straight from ASGI `receive`, chunk by chunk, knowing how it ended."""

from collections.abc import AsyncIterator

from starlette.types import Receive

from protocol.errors import ErrorCode, GdosError

DISCARD_CAP = 64 << 20


class Body:
    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False  # the last chunk arrived, or the client went away
        self.cut = False  # the client went away first

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
