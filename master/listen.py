"""The master's listening sockets, opened before the application is imported.

A restarted master spends seconds importing and loading before it serves. Listening first
lets the kernel queue the connections of agents that reconnect meanwhile (each waits in its
open timeout): they are answered as soon as the master serves, instead of being refused and
backing off past that moment. The sockets are bound as asyncio's `create_server` would bind
them for the same host and port.
"""

import socket

BACKLOG = 2048  # uvicorn's default: a whole fleet reconnecting at once fits in the queue


def listen(host: str | None, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of `host` (all interfaces when
    empty or None); `OSError` (closing what was opened) when one cannot be bound."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: the IPv4 socket takes IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
