"""What every GDOS WebSocket endpoint does the same way: origin check and frame hygiene."""

import contextlib
from urllib.parse import urlsplit

from fastapi import WebSocket
from starlette.requests import HTTPConnection

CLOSE_UNSUPPORTED_DATA = 1003  # a binary frame where JSON text is expected
CLOSE_INVALID_PAYLOAD = 1007  # text that is not JSON


def cross_origin(conn: HTTPConnection) -> bool:
    """A browser page from another site trying to open our socket (CSWSH). Non-browser clients
    (agents, the console, scripts) send no Origin and pass."""
    origin = conn.headers.get("origin")
    if not origin:
        return False
    host = conn.headers.get("host", "")
    return urlsplit(origin).netloc.lower() != host.lower()


async def close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):  # already closed
        await ws.close(code, reason)


async def receive_text(ws: WebSocket) -> str | None:
    """The next text frame, or None once the socket is closed (binary frames close it: 1003)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        await close(ws, CLOSE_UNSUPPORTED_DATA, "send JSON text frames, not binary")
        return None
    return str(text)
