"""The agent's WebSocket client: the `websockets` sans-I/O `ClientProtocol` over asyncio streams.

Not the library's asyncio client, whose module imports `ssl`: an agent whose master is plain
http keeps OpenSSL out (`agent.tls`), so this module opens the socket itself, with TLS only for
wss://. The protocol (framing, masking, limits, close codes) is the library's; what is here is
the I/O around it, message assembly and a keepalive. No extension is offered (no compression).
"""

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidMessage, InvalidURI
from websockets.exceptions import InvalidStatus as _Refused
from websockets.frames import Frame, Opcode
from websockets.protocol import CONNECTING, OPEN, Protocol
from websockets.uri import parse_uri

from agent import tls
from agent.liveness import Liveness, pong_or_stopped

if TYPE_CHECKING:
    import ssl

_READ_SIZE = 1 << 16
_NORMAL = (1000, 1001, 1005)  # 1005: the server closed without a code
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
KEEPALIVE_LOST = "keepalive ping timeout"  # the reason of a link the keepalive gave up on


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


def _closed_by(protocol: Protocol) -> ConnectionClosed:
    """Why the protocol left OPEN: the close frame that started the closing, else a lost link."""
    rcvd, sent = protocol.close_rcvd, protocol.close_sent
    close = rcvd if rcvd is not None and (sent is None or protocol.close_rcvd_then_sent) else sent
    if close is None:
        return ConnectionClosed(1006, "connection lost")
    return ConnectionClosed(close.code, close.reason)


class ClientConnection:
    def __init__(
        self,
        protocol: ClientProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ping_interval: float | None,
        ping_timeout: float,
        frames: Iterable[Frame] = (),
        liveness: Liveness | None = None,
        master: str = "",
    ) -> None:
        self._protocol = protocol
        self._reader = reader
        self._writer = writer
        self._frames: deque[Frame] = deque(frames)  # parsed, not yet given to recv()
        self._parts: list[bytes] = []  # the fragments of the message being received
        self._text = False
        self._ping_timeout = ping_timeout
        self._pong = asyncio.Event()
        self._liveness = liveness
        self._master = master
        self._closed: ConnectionClosed | None = None
        self._keepalive = (
            asyncio.create_task(self._pinger(ping_interval)) if ping_interval else None
        )

    async def send(self, message: str | bytes) -> None:
        if self._closed is not None or self._protocol.state is not OPEN:
            raise self._error()
        if isinstance(message, str):
            self._protocol.send_text(message.encode())
        else:
            self._protocol.send_binary(message)
        await self._flush()

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed once the connection is gone."""
        while True:
            while self._frames:
                try:
                    message = self._assemble(self._frames.popleft())
                except UnicodeDecodeError:
                    self._frames.clear()
                    self._protocol.fail(1007, "invalid UTF-8 in a text message")
                    await self._shut(_closed_by(self._protocol))
                    break
                if message is not None:
                    return message
            if self._closed is not None:
                raise self._closed
            await self._receive()

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
            if self._protocol.state is OPEN:
                self._protocol.send_close(code, reason)
            await self._shut(ConnectionClosed(code, reason))

    async def __aenter__(self) -> "ClientConnection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------------

    def _assemble(self, frame: Frame) -> str | bytes | None:
        """A whole message once its last fragment is in; pongs wake the keepalive."""
        if frame.opcode is Opcode.PONG:
            self._pong.set()
        if frame.opcode not in _DATA:
            return None  # the protocol answered pings and close frames itself
        if frame.opcode is not Opcode.CONT:
            self._text = frame.opcode is Opcode.TEXT
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return None
        data = b"".join(self._parts)
        self._parts = []
        return data.decode() if self._text else data

    async def _receive(self) -> None:
        """Feed what arrives to the protocol; send what it answers; end when it closes."""
        if self._protocol.state is not OPEN:  # a close frame came with the upgrade's answer
            await self._shut(_closed_by(self._protocol))
            return
        try:
            data = await self._reader.read(_READ_SIZE)
        except OSError:
            data = b""
        if self._closed is not None:
            return  # closed meanwhile (keepalive, close())
        protocol = self._protocol
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        self._frames.extend(e for e in protocol.events_received() if isinstance(e, Frame))
        if protocol.state is OPEN:
            with contextlib.suppress(ConnectionClosed):  # recv() raises it at its next turn
                await self._flush()  # pongs
        else:
            await self._shut(_closed_by(protocol))  # the echo of a close frame, or our own

    async def _flush(self) -> None:
        pending = self._protocol.data_to_send()
        if not pending:
            return  # no drain: a full send buffer must not hold up a recv() with nothing to send
        self._writer.writelines(pending)  # never interleaved: no await since data_to_send()
        try:
            await self._writer.drain()
        except OSError:
            self._abort(ConnectionClosed(1006, "connection lost"))
            raise self._error() from None

    async def _shut(self, closed: ConnectionClosed) -> None:
        """Mark the connection closed, send what the protocol still has (best effort), drop it."""
        if self._closed is None:
            self._closed = closed
            with contextlib.suppress(OSError, TimeoutError):
                self._writer.writelines(self._protocol.data_to_send())
                await asyncio.wait_for(self._writer.drain(), 2)
        self._abort(closed)

    def _error(self) -> ConnectionClosed:
        return self._closed or _closed_by(self._protocol)

    def _abort(self, closed: ConnectionClosed) -> None:
        if self._closed is None:
            self._closed = closed
        # abort(), not close(): close() waits until unsent data is written, and a peer that
        # reads nothing would then keep the socket and the pending recv() alive.
        self._writer.transport.abort()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        if self._liveness is not None:
            self._liveness.close()

    async def _pinger(self, interval: float) -> None:
        """A dead master (or a silent network) is noticed within interval + timeout, a stopped
        one sooner when its liveness probe was answered before (agent/liveness.py)."""
        live = self._liveness
        while self._closed is None:
            await asyncio.sleep(interval)
            self._pong.clear()
            if live is not None:
                live.prove()
            try:
                # The timeout covers the write too: a peer that stopped reading fills the send
                # buffer, and then the ping itself never leaves.
                async with asyncio.timeout(self._ping_timeout):
                    if self._closed is not None:
                        return
                    self._protocol.send_ping(os.urandom(4))
                    await self._flush()
                    if not await pong_or_stopped(self._pong.wait(), live, self._master):
                        raise TimeoutError
            except ConnectionClosed:
                return
            except TimeoutError:
                self._abort(ConnectionClosed(1011, KEEPALIVE_LOST))
                return


def _refusal(exc: Exception) -> WebSocketError:
    """The library's reason for a failed upgrade, as this module's error."""
    if isinstance(exc, _Refused):
        return InvalidStatus(exc.response.status_code)
    if isinstance(exc, InvalidMessage):
        if isinstance(exc.__cause__, EOFError):
            return WebSocketError("the server closed the connection during the upgrade")
        return WebSocketError(f"not an HTTP response to the upgrade: {exc.__cause__ or exc}")
    return WebSocketError(f"the server did not upgrade to WebSocket: {exc}")


async def connect(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    ssl: "ssl.SSLContext | None" = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
    max_size: int = 1 << 20,
    probe_liveness: bool = False,
) -> ClientConnection:
    """Open a WebSocket to `url` (ws:// or wss://); InvalidStatus if the server refuses. With
    `probe_liveness`, the keepalive also asks the peer's process whether it runs (UDP)."""
    try:
        uri = parse_uri(url)
    except (InvalidURI, ValueError) as exc:  # ValueError: e.g. a port over 65535
        raise WebSocketError(f"not a WebSocket URL: {url[:100]!r} ({exc})") from None
    if uri.secure and ssl is None:
        ssl = tls.verifying()
    protocol = ClientProtocol(uri, max_size=max_size)
    request = protocol.connect()
    for name, value in (headers or {}).items():
        request.headers[name] = value
    protocol.send_request(request)
    async with asyncio.timeout(open_timeout):
        try:
            reader, writer = await asyncio.open_connection(
                uri.host, uri.port, ssl=ssl if uri.secure else None, limit=_READ_SIZE
            )
        except OSError:
            raise  # ssl's verification error is a ValueError too: keep it what it is
        except ValueError as exc:  # e.g. a host name IDNA cannot encode (a UnicodeError)
            raise WebSocketError(f"cannot connect to {url[:100]!r}: {exc}") from None
        try:
            writer.writelines(protocol.data_to_send())
            await writer.drain()
            while protocol.state is CONNECTING and protocol.handshake_exc is None:
                data = await reader.read(_READ_SIZE)
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
            if protocol.handshake_exc is not None:
                raise _refusal(protocol.handshake_exc)
        except BaseException:
            writer.close()
            raise
    frames = [e for e in protocol.events_received() if isinstance(e, Frame)]
    writer.writelines(protocol.data_to_send())  # pongs to pings that came with the upgrade
    live = None
    if probe_liveness and ping_interval:
        live = await Liveness.open(writer.get_extra_info("peername"))
    return ClientConnection(
        protocol, reader, writer, ping_interval, ping_timeout, frames, live, url
    )
