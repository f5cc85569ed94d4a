"""The event stream on its own thread, so that reading and parsing it never costs the GUI thread.

A fleet's worth of `metrics` events is thousands of JSON objects a second, too much parsing for
the GUI thread. Here a daemon thread runs
the client's `EventStream` on its own asyncio loop and puts what arrives in an `Inbox`:
- state events (`instance`, `node`, `alert`, `operation`, `log`...) in arrival order;
- `metrics` samples straight into `LiveFigures` (the newest per target wins; at 1 Hz per
  target nothing a view shows is lost).
Once a burst of samples is over, the thread also works out the order of a table sorted by a live
column (`LiveOrder`, models/live_order.py), so the GUI thread's re-sort only swaps it in.
The first event after a drain wakes the GUI thread once (a queued Qt signal); the GUI thread then
takes everything that piled up in one go: batching happens by itself when the GUI is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from console.client import Client, EventStream
from console.client.events import ONE_MASTER, Keepalive
from console.models.live_order import LiveOrder

STATUS = "_status"  # (connected, reason): the stream thread's connectivity changes
CONNECTED = "_connected"  # the stream (re)connected: state may have been missed

Event = tuple[str, Any]


MANY = 512  # changed targets in one drain from which "everything may have changed" is cheaper
# Seconds without a new sample before the stream thread works out the order: as long as the GUI
# thread waits before it drains (session.DRAIN_MS), so both see the same end of a burst; shorter,
# frames of one burst more than this apart had the order swapped in before the last ones came,
# and the view painted the re-sort tick twice.
ORDER_QUIET = 0.03


class LiveFigures:
    """The newest `metrics` sample of each target, shared by both threads.

    The stream thread writes `samples` (one dict store per sample, GIL-atomic) and notes which
    targets changed; the GUI thread reads `samples` for what it paints and takes the changes.
    So a second's worth of a whole fleet's samples costs the GUI thread nothing per sample:
    the objects are made, replaced and freed on the stream thread, and from `MANY` changes on
    the GUI thread is only told "many" (and signals the live columns as a whole).
    """

    def __init__(self) -> None:
        self.samples: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._many = False
        self.order = LiveOrder()  # a table's order by a live column, worked out off the GUI

    def put(self, key: str, sample: dict[str, Any]) -> None:
        """Stream thread (or GUI thread: tests, `Session.dispatch`)."""
        self.samples[key] = sample
        self.order.touch()
        with self._lock:
            if self._many:
                return
            self._changed.add(key)
            if len(self._changed) >= MANY:
                self._many = True
                dropped, self._changed = self._changed, set()
        if self._many:
            del dropped  # freed here, on the thread that made its strings

    def take(self) -> set[str] | None:
        """GUI thread: the targets changed since the last take, or None for "many"."""
        with self._lock:
            many, changed = self._many, self._changed
            self._many, self._changed = False, set()
        return None if many else changed

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.samples.pop(key, None)
        self.order.touch()


class Inbox:
    """Hand-over from the stream thread to the GUI thread (both sides lock briefly)."""

    def __init__(self, wake: Callable[[], None], live: LiveFigures | None = None) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._live_pending = False
        self.live = live if live is not None else LiveFigures()
        self._woken = False
        self._wake = wake
        self.received = 0  # events put, for diagnostics
        self.last_put = 0.0  # time.monotonic() of the newest event

    def put(self, topic: str, data: Any) -> None:
        """Stream thread: queue one event; wake the GUI thread if it is not woken already."""
        self.last_put = time.monotonic()
        if topic == "metrics":
            key = data.get("id")
            if type(key) is not str:
                return
            self.live.put(key, data)
        with self._lock:
            self.received += 1
            if topic == "metrics":
                self._live_pending = True
            else:
                self._events.append((topic, data))
            if self._woken:
                return
            self._woken = True
        self._wake()

    def take(self) -> tuple[list[Event], bool]:
        """GUI thread: the events queued since the last take, and whether figures changed."""
        with self._lock:
            events, live = self._events, self._live_pending
            self._events, self._live_pending = [], False
            self._woken = False
        return events, live


class StreamThread:
    """Runs `EventStream(client)` on a daemon thread until `stop()`; events go to `inbox`."""

    def __init__(
        self,
        client: Client,
        inbox: Inbox,
        batch: bool = True,
        keys: Iterable[str] = (),
        keepalive: Keepalive = ONE_MASTER,
    ) -> None:
        self.inbox = inbox
        self.stream = EventStream(client, inbox.put, self._status, batch=batch, keepalive=keepalive)
        self.stream.keys = set(keys)  # subscribed from the first connection on
        self.stream.on_connect = self._connected
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="gdos-event-stream", daemon=True)
        self._order_due = False  # a computation of the live order is scheduled

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        # A plain asyncio loop of the platform's default kind: the GUI thread runs qasync's
        # policy, whose loops belong to the Qt application and its thread.
        loop = asyncio.DefaultEventLoopPolicy().new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        order = self.inbox.live.order
        order.attend(self._order_soon)
        self._ready.set()
        try:
            loop.run_until_complete(self.stream.run())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            if order.wake == self._order_soon:  # not yet another stream thread's
                order.attend(None)
            loop.close()

    def _order_soon(self) -> None:
        """Any thread: the samples or what to sort changed; work the order out on this thread
        once the samples have been quiet for `ORDER_QUIET` (one computation per burst)."""
        if self._order_due:
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        self._order_due = True
        try:
            if threading.get_ident() == self._thread.ident:
                loop.call_soon(self._order_when_quiet, None)
            else:
                loop.call_soon_threadsafe(self._order_when_quiet, None)
        except RuntimeError:  # the loop closed meanwhile
            self._order_due = False

    def _order_when_quiet(self, seen: int | None) -> None:
        order = self.inbox.live.order
        assert self.loop is not None
        if order.changes != seen:  # samples still coming: look again after a quiet moment
            self.loop.call_later(ORDER_QUIET, self._order_when_quiet, order.changes)
            return
        self._order_due = False
        order.compute()

    def _status(self, connected: bool, reason: str) -> None:
        self.inbox.put(STATUS, (connected, reason))

    async def _connected(self) -> None:
        self.inbox.put(CONNECTED, None)

    def _call(self, make: Callable[[], Any]) -> Future[Any]:
        """Run a coroutine made by `make()` on the stream's loop; a future for any thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            done: Future[Any] = Future()
            done.set_result(None)
            return done
        return asyncio.run_coroutine_threadsafe(make(), loop)

    async def subscribe(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        await asyncio.wrap_future(self._call(lambda: self.stream.subscribe(wanted)))

    async def unsubscribe(self, keys: Iterable[str]) -> None:
        gone = list(keys)
        await asyncio.wrap_future(self._call(lambda: self.stream.unsubscribe(gone)))

    @property
    def keys(self) -> set[str]:
        return set(self.stream.keys)

    def retry_now(self) -> None:
        """If the stream is waiting to reconnect, try at once."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.stream.retry_now)

    async def stop(self, timeout: float = 5.0) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the thread is ending
                loop.call_soon_threadsafe(self.stream.stop)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, timeout)
