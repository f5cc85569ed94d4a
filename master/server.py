"""uvicorn's h11 protocol with a deadline on request headers and a cap on silent connections.

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


class GuardedH11Protocol(H11Protocol):
    _silent: ClassVar[set["GuardedH11Protocol"]] = set()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self._silent) >= MAX_SILENT:
            transport.close()
            return
        self._silent.add(self)
        self._deadline = self.loop.call_later(HEADER_TIMEOUT, self._drop_if_silent)

    def handle_events(self) -> None:
        super().handle_events()
        if self in self._silent and getattr(self, "scope", None) is not None:
            self._spoke()  # complete headers arrived (a request, or a WebSocket upgrade)

    def connection_lost(self, exc: Exception | None) -> None:
        self._spoke()
        super().connection_lost(exc)

    def _spoke(self) -> None:
        self._silent.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _drop_if_silent(self) -> None:
        if self in self._silent:
            self._silent.discard(self)
            self.transport.close()
