"""uvicorn's HTTP protocols with a deadline on request headers and a cap on silent connections.

uvicorn keeps a TCP connection that never sends a request open forever, so a flood of idle
sockets (or a slowloris dribbling header bytes) would exhaust file descriptors. Here a
connection must deliver complete request headers within `HEADER_TIMEOUT` seconds, and at most
`MAX_SILENT` connections may be waiting for theirs at once; agents and consoles finish their
handshake in milliseconds, so only idle sockets are ever cut.
"""

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
MAX_SILENT = 1024

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


def guarded_protocol() -> type[Any]:
    """httptools when installed (much faster on large bodies), else h11; both guarded."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return GuardedH11Protocol

    class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):  # type: ignore[misc]
        def on_headers_complete(self) -> None:
            self._spoke()
            super().on_headers_complete()

    return GuardedHttpToolsProtocol
