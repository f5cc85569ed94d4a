"""Answers agents' liveness probes (agent/liveness.py) from a thread, on the UDP port of each
listening TCP socket (the same number).

The thread answers while the event loop is busy (a storm of hellos, a long turn: the thread
takes the GIL at the interpreter's switch interval), and stops answering only when the whole
process does (SIGSTOP, a lost host or network): so an agent may leave a master whose pong is
late and whose probe goes unanswered long before the pong deadline. Started with several
masters (PostgreSQL) only: one master is never left for another. An answer is no bigger than
its probe and carries nothing but the probe's nonce.
"""

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Sequence
from typing import Any

from protocol.liveness import ANSWER, NONCE, PROBE

log = logging.getLogger(__name__)


class LivenessResponder:
    """One daemon thread answering probes on UDP sockets bound beside the TCP ones."""

    def __init__(self, listening: Sequence[tuple[int, Any]]) -> None:
        """`listening`: the family and address of each listening TCP socket."""
        self.sockets: list[socket.socket] = []
        for family, address in listening:
            try:
                udp = socket.socket(family, socket.SOCK_DGRAM)
            except OSError:
                continue
            try:
                if family == socket.AF_INET6:
                    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                udp.bind(address)
                udp.setblocking(False)
            except OSError as exc:  # the UDP port taken: agents fall back on the pong deadline
                log.warning("no liveness probe on UDP %s: %s", address, exc)
                udp.close()
                continue
            self.sockets.append(udp)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def beside(cls, listening: list[socket.socket]) -> "LivenessResponder":
        """A responder on the UDP twin of each of these listening sockets, started."""
        return cls([(tcp.family, tcp.getsockname()) for tcp in listening]).start()

    def start(self) -> "LivenessResponder":
        if self.sockets:
            self._thread = threading.Thread(target=self._serve, name="gdos-liveness", daemon=True)
            self._thread.start()
        return self

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            for udp in self.sockets:
                selector.register(udp, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    answer(key.fileobj)  # type: ignore[arg-type]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        for udp in self.sockets:
            udp.close()


def answer(udp: socket.socket) -> int:
    """Answer every probe waiting on `udp`; returns how many were answered."""
    answered = 0
    while True:
        try:
            data, peer = udp.recvfrom(64)
        except (BlockingIOError, InterruptedError):
            return answered
        except OSError:  # e.g. an ICMP error queued on the socket: the selector wakes again
            return answered
        if len(data) != len(PROBE) + NONCE or not data.startswith(PROBE):
            continue
        with contextlib.suppress(OSError):
            udp.sendto(ANSWER + data[len(PROBE) :], peer)
            answered += 1
