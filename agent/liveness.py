"""Whether the master process behind a link still runs, asked over UDP (master/liveness.py).

A pong that is late says "the master's event loop is busy or the master is gone", and only the
pong deadline (3.5 s) told the two apart. A master answers this probe from a thread of its own,
on the UDP port of its listening TCP port, so a busy loop does not keep the answer back but a
stopped process (SIGSTOP) or a lost host or network does. A link whose pong is `SUSPECT` late
probes; no answer within `PROBE_WAIT` and the master is left at once, an answer and the pong
deadline stands. Only a link whose probe was answered once (at its start) trusts a silence:
behind a proxy, a firewall or a master of an older version the probe is never answered, and
the pong deadline alone decides, as before.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from typing import Any

from protocol.liveness import ANSWER, NONCE, PROBE

log = logging.getLogger(__name__)

SUSPECT = 1.0  # s a pong may be late before the master's process is asked whether it runs
PROBE_WAIT = 1.0  # s without an answer that mean it does not (probes go out every PROBE_EVERY)
PROBE_EVERY = 0.3
PROVE_TRIES = 5  # probes at the link's start (one a ping) until one is answered


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, probe: "Liveness") -> None:
        self.probe = probe

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.probe.received(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: no answer
        pass


class Liveness:
    """The UDP probe of one link's master; `proven` once the master answered it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.proven = False
        self.tries = 0
        self.answered_at = 0.0  # monotonic
        self._sent: set[bytes] = set()
        self._answer = asyncio.Event()

    @classmethod
    async def open(cls, peer: Any) -> "Liveness | None":
        """A probe of the TCP peer `peer` (its address and port), one datagram sent; None when
        no UDP socket can be opened to it."""
        if not isinstance(peer, tuple) or len(peer) < 2:
            return None
        probe = cls()
        try:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(probe), remote_addr=(peer[0], peer[1])
            )
        except OSError:
            return None
        probe.transport = transport
        probe.prove()
        return probe

    def prove(self) -> None:
        """At the link's start: one more probe while none was answered (PROVE_TRIES)."""
        if not self.proven and self.tries < PROVE_TRIES:
            self.tries += 1
            self.send()

    def send(self) -> None:
        if self.transport is None:
            return
        nonce = os.urandom(NONCE)
        if len(self._sent) > 64:  # answers to old probes are not waited for any more
            self._sent.clear()
        self._sent.add(nonce)
        with contextlib.suppress(OSError):
            self.transport.sendto(PROBE + nonce)

    def received(self, data: bytes) -> None:
        if not data.startswith(ANSWER) or data[len(ANSWER) :] not in self._sent:
            return
        self.proven = True
        self.answered_at = time.monotonic()
        self._answer.set()

    async def answers(self) -> bool:
        """Probe every PROBE_EVERY; True as soon as the master answers, False after PROBE_WAIT
        seconds of silence."""
        self._answer.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROBE_WAIT):
                while True:
                    self.send()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PROBE_EVERY):
                            await self._answer.wait()
                            return True
        return False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def pong_or_stopped(pong: Awaitable[Any], probe: "Liveness | None", master: str) -> bool:
    """Wait for a ping's pong (the caller bounds the wait by the pong deadline): True when it
    came, False as soon as a proven probe says the master's process does not run."""
    waiting = asyncio.ensure_future(pong)
    answered: asyncio.Future[bool] | None = None
    try:
        if probe is None or not probe.proven:
            await waiting
            return True
        done, _ = await asyncio.wait((waiting,), timeout=SUSPECT)
        if done:
            return True
        answered = asyncio.ensure_future(probe.answers())
        done, _ = await asyncio.wait((waiting, answered), return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            return True
        if not answered.result():
            log.warning(
                "the master at %s answers neither pings (%.1f s) nor its liveness probe (%.1f "
                "s): its process is stopped or out of reach; leaving it",
                master,
                SUSPECT,
                PROBE_WAIT,
            )
            return False
        await waiting  # alive, its loop busy: the pong deadline decides
        return True
    finally:
        waiting.cancel()
        if answered is not None:
            answered.cancel()
