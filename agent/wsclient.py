"""The agent's WebSocket client: RFC 6455, client side, no extensions, over asyncio streams.

Not the `websockets` library: its client imports `ssl` unconditionally, which would put OpenSSL
in every agent (see `agent.tls`). The agent needs text messages, pings both ways, a close
handshake and a size limit; no compression, so the master keeps no zlib state per agent.
"""

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import struct
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent import tls

if TYPE_CHECKING:
    import ssl

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([0-9]{3})(?: .*)?")
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_NORMAL = (1000, 1001, 1005)  # 1005: the server closed without a code


class WebSocketError(Exception):
    """The connection could not be opened or used."""


class InvalidStatus(WebSocketError):
    """The server answered the upgrade with a plain HTTP status (e.g. 401 for a revoked node)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status}")
        self.status = status


class ConnectionClosed(WebSocketError):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    stream = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ stream).to_bytes(n, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)  # clients must mask every frame (RFC 6455 5.3)
    return head + key + _mask(payload, key)


def _sendable_close_code(code: int) -> bool:
    """RFC 6455 7.4: 1005, 1006 and 1015 never go on the wire; 1016-2999 are unassigned."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324


class ClientConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_size: int,
        ping_interval: float | None,
        ping_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_size = max_size
        self._ping_timeout = ping_timeout
        self._pong = asyncio.Event()
        self._closed: ConnectionClosed | None = None
        self._keepalive = (
            asyncio.create_task(self._pinger(ping_interval)) if ping_interval else None
        )

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._write(_TEXT, message.encode())
        else:
            await self._write(_BINARY, message)

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed once the connection is gone."""
        if self._closed is not None:
            raise self._closed
        try:
            return await self._next_message()
        except _ProtocolError as exc:
            await self._fail(exc.code, str(exc))
        except (asyncio.IncompleteReadError, OSError):
            self._abort(1006, "connection lost")
        raise self._error()

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        """Messages until the server closes normally; ConnectionClosed for any other end."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed as exc:
                if exc.code in _NORMAL:
                    return
                raise

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed is None:
            await self._fail(code, reason)  # which also ends the keepalive

    async def __aenter__(self) -> "ClientConnection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------------

    async def _write(self, opcode: int, payload: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        try:
            self._writer.write(_frame(opcode, payload))  # one write per frame: never interleaved
            await self._writer.drain()
        except OSError:
            self._abort(1006, "connection lost")
            raise self._error() from None

    async def _next_message(self) -> str | bytes:
        parts: list[bytes] = []
        size = 0
        kind: int | None = None
        while True:
            fin, opcode, payload = await self._read_frame()
            if opcode >= _CLOSE:
                await self._control(opcode, payload)
                continue
            if opcode == _CONT:
                if kind is None:
                    raise _ProtocolError(1002, "continuation without a message")
            elif opcode in (_TEXT, _BINARY):
                if kind is not None:
                    raise _ProtocolError(1002, "new message inside a fragmented one")
                kind = opcode
            else:
                raise _ProtocolError(1002, f"unknown opcode {opcode}")
            size += len(payload)
            if size > self._max_size:
                raise _ProtocolError(1009, f"message over {self._max_size} bytes")
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if kind == _BINARY:
                    return data
                try:
                    return data.decode()
                except UnicodeDecodeError:
                    raise _ProtocolError(1007, "invalid UTF-8 in a text message") from None

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = await self._reader.readexactly(2)
        if b0 & 0x70:
            raise _ProtocolError(1002, "reserved bits set (no extension was negotiated)")
        if b1 & 0x80:
            raise _ProtocolError(1002, "masked frame from the server")
        fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if opcode >= _CLOSE and (n > 125 or not fin):
            raise _ProtocolError(1002, "oversized or fragmented control frame")
        if n > self._max_size:
            raise _ProtocolError(1009, f"message over {self._max_size} bytes")
        return fin, opcode, await self._reader.readexactly(n)

    async def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            await self._write(_PONG, payload)
        elif opcode == _PONG:
            self._pong.set()
        elif opcode == _CLOSE:
            if len(payload) == 1:
                raise _ProtocolError(1002, "close frame with a one-byte body")
            code = struct.unpack("!H", payload[:2])[0] if payload else 1005
            if payload and not _sendable_close_code(code):
                raise _ProtocolError(1002, f"invalid close code {code}")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                raise _ProtocolError(1007, "invalid UTF-8 in a close reason") from None
            await self._fail(code, reason, body=payload[:2])  # echo it; the server then hangs up
            raise self._error()
        else:
            raise _ProtocolError(1002, f"unknown control opcode {opcode}")

    async def _fail(self, code: int, reason: str, body: bytes | None = None) -> None:
        """Mark the connection closed, send a close frame (best effort), drop it."""
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
            if body is None:
                body = struct.pack("!H", code) + reason.encode()[:120]
            with contextlib.suppress(OSError, TimeoutError):
                self._writer.write(_frame(_CLOSE, body))
                await asyncio.wait_for(self._writer.drain(), 2)
        self._abort(code, reason)

    def _error(self) -> ConnectionClosed:
        return self._closed or ConnectionClosed(1006, "connection lost")

    def _abort(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
        # abort(), not close(): close() waits until unsent data is written, and a peer that
        # reads nothing would then keep the socket and the pending recv() alive.
        self._writer.transport.abort()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()

    async def _pinger(self, interval: float) -> None:
        """A dead master (or a silent network) is noticed within interval + timeout."""
        while self._closed is None:
            await asyncio.sleep(interval)
            self._pong.clear()
            try:
                # The timeout covers the write too: a peer that stopped reading fills the send
                # buffer, and then the ping itself never leaves.
                async with asyncio.timeout(self._ping_timeout):
                    await self._write(_PING, os.urandom(4))
                    await self._pong.wait()
            except ConnectionClosed:
                return
            except TimeoutError:
                self._abort(1011, "keepalive ping timeout")
                return


async def connect(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    ssl: "ssl.SSLContext | None" = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
    max_size: int = 1 << 20,
) -> ClientConnection:
    """Open a WebSocket to `url` (ws:// or wss://); InvalidStatus if the server refuses."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WebSocketError(f"not a WebSocket URL: {url[:100]!r}")
    secure = parts.scheme == "wss"
    if secure and ssl is None:
        ssl = tls.verifying()
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:  # e.g. a port over 65535
        raise WebSocketError(f"bad WebSocket URL {url[:100]!r}: {exc}") from None
    host_header = parts.netloc.rpartition("@")[2]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    async with asyncio.timeout(open_timeout):
        try:
            reader, writer = await asyncio.open_connection(
                parts.hostname, port, ssl=ssl if secure else None, limit=1 << 16
            )
        except OSError:
            raise  # ssl's verification error is a ValueError too: keep it what it is
        except ValueError as exc:  # e.g. a host name IDNA cannot encode (a UnicodeError)
            raise WebSocketError(f"cannot connect to {url[:100]!r}: {exc}") from None
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise WebSocketError("oversized HTTP response to the upgrade") from None
            except asyncio.IncompleteReadError:
                raise WebSocketError(
                    "the server closed the connection during the upgrade"
                ) from None
            _check_upgrade(head, key)
        except BaseException:
            writer.close()
            raise
    return ClientConnection(reader, writer, max_size, ping_interval, ping_timeout)


def _check_upgrade(head: bytes, key: str) -> None:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = _STATUS_LINE.fullmatch(status_line)
    if status is None:
        raise WebSocketError(f"not an HTTP response to the upgrade: {status_line[:100]!r}")
    if int(status[1]) != 101:
        raise InvalidStatus(int(status[1]))
    got: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            got[name.strip().lower()] = value.strip()
    if got.get("upgrade", "").lower() != "websocket" or "upgrade" not in got.get(
        "connection", ""
    ).lower().replace(" ", "").split(","):
        raise WebSocketError("the server did not upgrade to WebSocket")
    if got.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError("wrong Sec-WebSocket-Accept from the server")
    if got.get("sec-websocket-extensions"):
        raise WebSocketError("the server chose an extension that was not offered")
