"""The master's listening sockets, opened before the application is imported.

A restarted master spends seconds importing and loading before it serves. Listening first
lets the kernel queue the connections of agents that reconnect meanwhile (each waits in its
open timeout): they are answered as soon as the master serves, instead of being refused and
backing off past that moment. The sockets are bound as asyncio's `create_server` would bind
them for the same host and port.

The kernel's queue and the connections taken from it per turn of the event loop are two
numbers: asyncio's server uses its `backlog` for both (`listen(backlog)`, then at most that many
`accept()`s each time the socket is ready). A whole fleet fits in the queue, and `Listener`
keeps it that long whatever asyncio asks, so the server's `backlog` only paces the accepts.
"""

import socket
from typing import Any

BACKLOG = 2048  # the kernel's queue: a whole fleet reconnecting at once fits in it


class Listener(socket.socket):
    """A listening socket whose kernel queue a later `listen(n)` never shortens (asyncio's
    server calls `listen(backlog)` again with its accepts per turn)."""

    queue = BACKLOG

    def listen(self, backlog: Any = None) -> None:
        self.queue = max(self.queue, backlog or 0)
        super().listen(self.queue)


def listen(host: str | None, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of `host` (all interfaces when
    empty or None); `OSError` (closing what was opened) when one cannot be bound."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = Listener(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: the IPv4 socket takes IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.queue = backlog
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for opened in sockets:
            opened.close()
        raise
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
