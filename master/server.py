"""uvicorn's HTTP protocols with a deadline on request headers and a cap on silent connections.

uvicorn keeps a TCP connection that never sends a request open forever, so a flood of idle
sockets (or a slowloris dribbling header bytes) would exhaust file descriptors. Here a
connection must deliver complete request headers within `HEADER_TIMEOUT` seconds, and at most
`MAX_SILENT` connections may be waiting for theirs at once; agents and consoles finish their
handshake in milliseconds, so only idle sockets are ever cut.

It also makes large request bodies (package uploads) cheap for the event loop: see
`tune_allocator`, `_FastBody` and `DirectBody`.
"""

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.h11_impl import H11Protocol

from protocol.allocator import M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, mallopt

HEADER_TIMEOUT = 10.0
MAX_SILENT = 1024
UPGRADES_PER_TURN = 32  # WebSocket handshakes begun per turn of the event loop
READ_SIZE = 1 << 20  # bytes asked of the socket per read (asyncio's default is 256 KiB)
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 8 << 20
MALLOC_ARENAS = 2

log = logging.getLogger(__name__)


def tune_allocator() -> bool:
    """Keep glibc from mapping and unmapping a fresh region for every socket read.

    Each read of a request body is a new bytes object of up to `READ_SIZE`; glibc serves
    blocks over 128 KiB with mmap() (and trims its heap as soon as 128 KiB are free), so every
    read would pay page faults and zeroing for each 4 KiB page. Blocks under `MMAP_THRESHOLD`
    come from the heap instead, and up to `TRIM_THRESHOLD` bytes of free heap are kept for the
    next read. glibc also gives every thread that allocates an arena of its own (up to 8 per
    core), each keeping what its thread freed: the worker threads' bursts (enrolments, hellos)
    left megabytes there; the event loop does most of the allocating, so `MALLOC_ARENAS` do
    (MALLOC_ARENA_MAX, when set, is left to glibc). Call it before any thread starts.
    Returns whether the tuning applied (only on glibc; elsewhere nothing changes).
    """
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    if not os.environ.get("MALLOC_ARENA_MAX"):
        ok = mallopt(M_ARENA_MAX, MALLOC_ARENAS) and ok
    if not ok:
        log.debug("mallopt refused the allocator tuning")
    return ok


_silent: set["_Guard"] = set()


class _Guard:
    """Mixed in before a uvicorn protocol class; `_spoke()` is called once headers are complete."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _deadline: asyncio.TimerHandle | None = None
    silent: ClassVar[set["_Guard"]] = _silent

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(_silent) >= MAX_SILENT:
            transport.close()
            return
        _silent.add(self)
        self._deadline = self.loop.call_later(HEADER_TIMEOUT, self._drop_if_silent)

    def connection_lost(self, exc: Exception | None) -> None:
        self._spoke()
        super().connection_lost(exc)  # type: ignore[misc]

    def _spoke(self) -> None:
        _silent.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _drop_if_silent(self) -> None:
        if self in _silent:
            _silent.discard(self)
            self.transport.close()


class GuardedH11Protocol(_Guard, H11Protocol):  # type: ignore[misc]
    def handle_events(self) -> None:
        super().handle_events()
        if self in _silent and getattr(self, "scope", None) is not None:
            self._spoke()  # complete headers arrived (a request, or a WebSocket upgrade)


class _FastBody:
    """Request bodies through uvicorn's httptools protocol with fewer copies and parser trips.

    Mixed in before `HttpToolsProtocol`. Three things:
    - the socket is read `READ_SIZE` bytes at a time instead of 256 KiB (fewer trips through
      the parser and the app);
    - a body piece goes to the app as the bytes object it arrived in: uvicorn appends every
      piece to a bytearray and copies that into a new bytes, two copies of every byte;
    - once the headers of a request with a single Content-Length (no Transfer-Encoding, no
      upgrade) are parsed, the rest of the body bypasses the parser: it only counts bytes
      there, but makes yet another copy of each. When the body is complete the parser is
      replaced by a fresh one for the next request on the connection, in the state the old
      one would have reached.
    """

    cycle: Any
    parser: Any
    scope: Any
    scheme: str
    transport: asyncio.Transport
    flow: Any
    headers: list[tuple[bytes, bytes]]
    _unset_keepalive_if_required: Callable[[], None]
    on_message_complete: Callable[[], None]
    _body_left = 0  # bytes of the current body that the parser has not seen and will not

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        # asyncio's socket transport reads `max_size` bytes at a time (a class attribute);
        # other transports (TLS) have no such attribute and are left alone.
        if hasattr(transport, "max_size"):
            transport.max_size = READ_SIZE

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # type: ignore[misc]
        self._body_left = 0 if self.parser.should_upgrade() else _plain_length(self.headers)
        if self._body_left > 0 and self._plain_socket() and self.cycle.scope is self.scope:
            self.scope.setdefault("extensions", {})[DIRECT_BODY] = DirectBody(self, self.cycle)

    def _plain_socket(self) -> bool:
        """A TCP socket without TLS, read by asyncio's own transport."""
        return hasattr(self.transport, "max_size") and self.scheme == "http"

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
        if self.cycle.body or self.parser.should_upgrade():
            super().on_body(body)  # type: ignore[misc]
        else:
            self._take(body)

    def data_received(self, data: bytes) -> None:
        left = self._body_left
        if left <= 0:
            super().data_received(data)  # type: ignore[misc]
            return
        self._unset_keepalive_if_required()
        if len(data) < left:
            self._body_left = left - len(data)
            self._take(data)
            return
        self._body_left = 0
        self._take(data if len(data) == left else data[:left])
        self.parser = _new_parser(self)
        self.on_message_complete()
        if len(data) > left:
            super().data_received(data[left:])  # type: ignore[misc]  # a pipelined request

    def _take(self, body: bytes) -> None:
        """uvicorn's on_body, without its copies: receive() hands bytes on as they are."""
        cycle = self.cycle
        if cycle.response_complete:
            return
        if cycle.body:  # the app has not taken the last piece yet
            cycle.body += body
        else:
            cycle.body = body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


DIRECT_BODY = "gdos.direct_body"  # the ASGI scope extension holding a request's `DirectBody`


class DirectBody:
    """A plain-TCP request body of known length that the app may read from the socket itself
    (on a thread, with no trip through the loop per piece) instead of through `receive`.

    `take()` stops the loop reading the socket and gives the app what is needed to read the
    rest; `give_back(read, close)` says how many bytes it took from the socket, after which
    `receive` goes on from there (nothing, once the whole body was read).
    """

    def __init__(self, protocol: Any, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._taken = False

    def take(self) -> tuple[int, bytes, int] | None:
        """(a duplicate of the socket's fd, the body bytes already read, the bytes left in the
        socket), or None when the body cannot be read that way (any more)."""
        p, cycle = self._protocol, self._cycle
        left = p._body_left
        if self._taken or p.cycle is not cycle or left <= 0 or p.transport.is_closing():
            return None
        if cycle.response_complete or cycle.disconnected or cycle.more_body is False:
            return None
        sock = p.transport.get_extra_info("socket")
        if sock is None:
            return None
        if cycle.waiting_for_100_continue:
            p.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        p.flow.pause_reading()
        # The thread's own fd: the socket outlives a transport closed meanwhile.
        fd = os.dup(sock.fileno())
        pending = bytes(cycle.body)
        cycle.body = bytearray()
        cycle.message_event.clear()
        self._taken = True
        return fd, pending, left

    def give_back(self, read: int, close: bool) -> None:
        """The app read `read` bytes from the socket; `close`: end the connection after the
        answer (the body stalled or was cut)."""
        p, cycle = self._protocol, self._cycle
        p._body_left -= read
        if close:
            cycle.keep_alive = False
        if p._body_left <= 0 and p.parser is not None and p.cycle is cycle:
            p._body_left = 0
            p.parser = _new_parser(p)
            p.on_message_complete()  # `receive` now answers the body's end
        elif not close:
            p.flow.resume_reading()


def _plain_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length of a request whose body is exactly that many bytes, else 0."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if len(lengths) != 1 or any(name == b"transfer-encoding" for name, _ in headers):
        return 0
    text = lengths[0].strip()
    return int(text) if text.isdigit() else 0


def _new_parser(protocol: object) -> Any:
    """A parser like the one uvicorn creates per connection."""
    import httptools

    parser = httptools.HttpRequestParser(protocol)
    with contextlib.suppress(AttributeError):  # httptools < 0.6.3, as in uvicorn
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


class UpgradePacer:
    """WebSocket handshakes begun at most `per_turn` a turn of the event loop; the others wait
    for the next turns in arrival order, their sockets unread meanwhile.

    After a restart the whole fleet's upgrade requests arrive in one turn, and each handshake
    is a protocol object, the handshake's parse and an ASGI task (then, in the app, a credential
    check and a hello): begun at once, a thousand held the loop for a fifth of a second of CPU.
    Plain HTTP requests are not paced: an API call never waits behind the agents' handshakes.
    """

    def __init__(self, per_turn: int = UPGRADES_PER_TURN) -> None:
        self.per_turn = per_turn
        self.waiting: deque[Callable[[], None]] = deque()
        self.begun = 0  # handshakes begun in this turn
        self.deferred = 0  # handshakes that waited for a later turn, since start
        self._loop: asyncio.AbstractEventLoop | None = None  # whose turns are counted

    def begin(self, upgrade: Callable[[], None]) -> bool:
        """Run `upgrade` now if this turn has room (True), else queue it for a later turn."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the first handshake of this turn (or of a new loop)
            self._loop, self.begun = loop, 0
            self.waiting.clear()  # a closed loop's connections are gone with it
            loop.call_soon(self._next_turn)
        if self.begun < self.per_turn and not self.waiting:
            self.begun += 1
            upgrade()
            return True
        self.waiting.append(upgrade)
        self.deferred += 1
        return False

    def _next_turn(self) -> None:
        self.begun = 0
        while self.waiting and self.begun < self.per_turn:
            self.begun += 1
            upgrade = self.waiting.popleft()
            try:
                upgrade()
            except Exception:  # one connection's failure; the others go on
                log.exception("a WebSocket upgrade failed")
        if self.begun and self._loop is not None:
            self._loop.call_soon(self._next_turn)  # counts the next turn too
        else:
            self._loop = None  # idle: the next handshake starts counting again


def guarded_protocol(upgrades: UpgradePacer | None = None) -> type[Any]:
    """httptools when installed (much faster on large bodies), else h11; both guarded.
    With httptools, WebSocket handshakes are paced by `upgrades` (a pacer of its own if None)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return GuardedH11Protocol
    pacer = upgrades if upgrades is not None else UpgradePacer()

    class GuardedHttpToolsProtocol(_Guard, _FastBody, HttpToolsProtocol):  # type: ignore[misc]
        def on_headers_complete(self) -> None:
            self._spoke()
            super().on_headers_complete()

        def handle_websocket_upgrade(self) -> None:
            if not pacer.begin(self._upgrade):
                self.transport.pause_reading()  # nothing more is read until it begins

        def _upgrade(self) -> None:
            if self.transport.is_closing():
                return  # closed while it waited (the server stopping)
            self.transport.resume_reading()  # paused only if it waited
            super().handle_websocket_upgrade()

    return GuardedHttpToolsProtocol


QUEUE_HIGH = 16  # messages an agent socket may have waiting for the app before reads pause
LARGE_MESSAGE = 64 << 10  # bytes; a message this large pauses reads at once, as uvicorn does


def paced_websocket_protocol() -> type[Any]:
    """uvicorn's sans-I/O WebSocket protocol, pausing the socket only when messages pile up,
    and handing text messages to an app's sink directly (master/ws_direct.py).

    uvicorn stops reading a socket after every message and starts again once the app took it:
    two epoll_ctl calls and their bookkeeping per message, a tenth of the CPU of a master fed
    by a thousand agents. Here reading pauses once `QUEUE_HIGH` messages wait (or a large one
    arrives) and resumes when the app has taken them all, so memory stays bounded.
    """
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from master.ws_direct import DirectText

    class PacedWebSocketProtocol(DirectText, WebSocketsSansIOProtocol):
        def send_receive_event_to_app(self) -> None:
            frames = self.frames
            size = len(frames[0]) if len(frames) == 1 else sum(map(len, frames))
            queued = self.queue.qsize()
            paused = self.read_paused
            self.read_paused = True  # so the parent does not pause at this message
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = paused
            if paused or self.queue.qsize() == queued:
                return  # already paused, or the message did not wait (a sink took it)
            if self.queue.qsize() >= QUEUE_HIGH or size >= LARGE_MESSAGE:
                self.read_paused = True
                self.transport.pause_reading()

    return PacedWebSocketProtocol


class NotifyingServer(uvicorn.Server):
    """uvicorn's server, calling `on_exit` when a signal begins the shutdown (before it closes
    the open connections), so that the agents it disconnects are not taken for lost nodes."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)
