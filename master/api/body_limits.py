"""Bounds on request bodies, enforced as the bytes arrive and before any route (or its auth) runs.

A JSON body, which every route but the package uploads takes, may be at most `max_bytes` long
and must arrive whole within `timeout` seconds. It is read here, chunk by chunk, and handed on
only once complete: an anonymous caller can make the master hold at most `max_bytes`, and a
declared Content-Length over it is refused from the headers alone. Uploads keep their own size
limits and may not pause longer than `timeout` between two pieces. Refusals are 413 and 408 in
the API's error shape; the connection is closed unless the refused body was read to its end.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from master.api.body import DISCARD_CAP
from protocol.errors import ErrorCode, GdosError

Streamed = Callable[[str, str], bool]  # (method, path) -> the route reads its body itself


class _TooLarge(Exception):
    def __init__(self, seen: int) -> None:
        super().__init__(seen)
        self.seen = seen  # bytes read before the refusal


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float, streamed: Streamed) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.streamed(scope["method"], scope["path"]):
            await _IdleLimited(self.app, self.timeout)(scope, receive, send)
        else:
            await self._whole(scope, receive, send)

    async def _whole(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        declared = _content_length(headers)
        deadline = time.monotonic() + self.timeout
        if declared is not None and declared > self.max_bytes:
            # A client that waits for "100 Continue" never sends the body; one that sends it
            # anyway only reads the answer once it is sent, so a body of sane size is drained.
            waits = headers.get("expect", "").lower() == "100-continue"
            ended = False
            if not waits and declared <= DISCARD_CAP:
                ended = await _drain(receive, 0, deadline)
            await self._too_large(scope, receive, send, close=not ended)
            return
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                ended = await self._read(receive, chunks)
        except TimeoutError:
            await _refuse(scope, receive, send, 408, timed_out(self.timeout), close=True)
            return
        except _TooLarge as exc:
            chunks.clear()
            ended = await _drain(receive, exc.seen, deadline)
            await self._too_large(scope, receive, send, close=not ended)
            return
        if not ended:
            return  # the client went away: nobody to answer
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _read(self, receive: Receive, chunks: list[bytes]) -> bool:
        """Collect the body into `chunks`; False when the client went away first."""
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                chunks.append(chunk)
                if size > self.max_bytes:
                    raise _TooLarge(size)
            if not message.get("more_body", False):
                return True

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, close: bool) -> None:
        message = (
            f"the request body is larger than {self.max_bytes} bytes, the master's limit "
            "(--max-body-bytes); packages go to /api/v1/packages"
        )
        await _refuse(scope, receive, send, 413, message, close, {"limit": self.max_bytes})


class _IdleLimited:
    """An upload: each piece of the body must come within `timeout` of the last. A stalled body
    reads as a client that went away (the route cleans up as for a cut), and its answer is 408."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        self.ended = False
        self.stalled = False
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            if self.stalled:
                return {"type": "http.disconnect"}
            if self.ended:
                return await receive()
            try:
                async with asyncio.timeout(self.timeout):
                    message = await receive()
            except TimeoutError:
                self.stalled = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                self.ended = True
            return message

        async def guarded_send(message: Message) -> None:
            if self.stalled and not self.started:
                return  # the route's answer to a "cut" body; ours follows
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
        if self.stalled and not self.started:
            await _refuse(scope, receive, send, 408, timed_out(self.timeout), close=True)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The whole body as one message, then the real `receive` (for disconnect notices)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


async def _drain(receive: Receive, seen: int, deadline: float) -> bool:
    """Read and drop the rest of a refused body, up to `DISCARD_CAP` bytes in all and until
    `deadline`, so that a client that reads only once its body is sent still gets the answer.
    True when the body ended (the connection can then serve another request)."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            while seen <= DISCARD_CAP:
                message = await receive()
                if message["type"] != "http.request":
                    return False
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        pass
    return False


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def timed_out(timeout: float) -> str:
    """The 408 message of a body that did not arrive in time."""
    return (
        f"the request body did not arrive within {timeout:g} s (--body-timeout); "
        "send it without pausing"
    )


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    close: bool,
    details: dict[str, Any] | None = None,
) -> None:
    code = ErrorCode.TOO_LARGE if status == 413 else ErrorCode.REQUEST_TIMEOUT
    body = GdosError(code, message, details).to_wire()
    headers = {"Connection": "close"} if close else None
    await JSONResponse({"error": body}, status_code=status, headers=headers)(scope, receive, send)
