"""The rest of a request body read straight from its socket, on a spool thread, into buffers.

The event loop hands over the socket of a body whose length it knows (master/server.py's
`DirectBody`) and stops reading it; a spool thread then reads the body into buffers it reuses,
with no trip through the loop, the HTTP server or the app per piece. The socket stays
non-blocking (the loop still owns it): the thread waits with poll(). Each wait for the next
bytes may last at most `idle_timeout` seconds; a longer silence ends the body as stalled.
`stop()` ends it from another thread at once (a cancelled request).
"""

import contextlib
import os
import select

POLL_IN = select.POLLIN if hasattr(select, "POLLIN") else 0


def can_poll() -> bool:
    """Whether this platform can wait on a socket from a thread with poll() (not Windows)."""
    return hasattr(select, "poll")


class SocketReader:
    """`left` more body bytes from socket `fd` (a duplicate this reader closes), after `pending`
    (the bytes the loop had already read)."""

    def __init__(self, fd: int, pending: bytes, left: int, idle_timeout: float) -> None:
        self.fd = fd
        self.left = left  # bytes still in the socket
        self.read = 0  # bytes taken from the socket so far
        self.cut = False  # the client went away before the end
        self.stalled = False  # the client sent nothing for `idle_timeout` seconds
        self._pending = memoryview(pending)
        self._idle_ms = max(1, int(idle_timeout * 1000))
        self._wake_r, self._wake_w = os.pipe()
        self._stopped = False
        self._poll = select.poll()
        self._poll.register(fd, POLL_IN)
        self._poll.register(self._wake_r, POLL_IN)

    @property
    def ended(self) -> bool:
        """Nothing more will come: the body is complete, cut, stalled or stopped."""
        return not self._pending and (self.left <= 0 or self.cut or self.stalled or self._stopped)

    def stop(self) -> None:
        """End the body now (any thread); a thread waiting in `fill` returns at once."""
        self._stopped = True
        with contextlib.suppress(OSError):  # closed already: nobody is waiting
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Release the socket duplicate and the wake-up pipe (once no thread uses them)."""
        for fd in (self.fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fd = self._wake_r = self._wake_w = -1

    def fill(self, view: memoryview) -> int:
        """Fill `view` with the next body bytes; fewer only at the end. Returns the count."""
        n = 0
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
        while n < len(view) and self.left > 0 and not self._stopped:
            want = min(len(view) - n, self.left)
            try:
                got = os.readv(self.fd, [view[n : n + want]])
            except BlockingIOError:
                if not self._wait():
                    break
                continue
            except InterruptedError:
                continue
            except OSError:  # reset by the peer, and the like: the client is gone
                self.cut = True
                break
            if got == 0:
                self.cut = True
                break
            n += got
            self.left -= got
            self.read += got
        return n

    def _wait(self) -> bool:
        """Wait until the socket has bytes; False when stalled or stopped instead."""
        events = self._poll.poll(self._idle_ms)
        if self._stopped:
            return False
        if not events:
            self.stalled = True
            return False
        return True
