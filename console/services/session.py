"""The connection to one master: log-in, the event stream, and who is listening to it.

Services register plain callbacks per topic with `on(topic, fn)` (the stream can carry thousands
of messages a second, so they do not each become a Qt signal), and `on_metrics(fn)` for live
samples, which arrive as one dict per drain (`{target id: sample}`). The stream itself is read
and parsed on its own thread (services/stream.py); the GUI thread only takes what piled up.
Connectivity and log-in changes are Qt signals for the widgets. A log-in may name several masters
sharing one database (`URL1,URL2`): the session is on one of them at a time, and `Failover`
(services/failover.py) moves it to another when that one stops answering.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from console.client import Client, ClientError
from console.client.events import ONE_MASTER
from console.client.masters import split_urls
from console.services.failover import KEEPALIVE, Failover
from console.services.stream import CONNECTED, STATUS, Inbox, LiveFigures, StreamThread

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], None]
# (every target's newest sample, the targets that changed or None for "many, maybe all")
MetricsHandler = Callable[[dict[str, dict[str, Any]], set[str] | None], None]
DRAIN_MS = 30  # the stream is taken after this much quiet...
MAX_WAIT = 0.3  # ...or this many seconds after its first event, whichever comes first


class Session(QObject):
    logged_in = Signal(str, str, str)  # master URL, username, role
    logged_out = Signal()
    reachable_changed = Signal(bool, str)  # reachable, reason
    resynced = Signal()  # the stream (re)connected: reload full state, events may have been missed
    master_changed = Signal(str, str)  # URL, id ("" until known) of the master the session is on
    _wake = Signal()  # emitted by the stream thread; delivered queued on the GUI thread

    def __init__(self, parent: QObject | None = None, drain_ms: int = DRAIN_MS) -> None:
        super().__init__(parent)
        self.client: Client | None = None
        self.stream: StreamThread | None = None
        self.reachable = False
        self.username = ""
        self.role = ""
        self.urls: list[str] = []  # the log-in's masters, in the order to try them
        self.verify: bool | str = True
        self.master_id = ""
        # What the stream is to be subscribed to; a new stream (a new log-in) starts with it,
        # and a reconnecting one sends it again, so no live view goes quiet after either.
        self.keys: set[str] = set()
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._metrics_handlers: list[MetricsHandler] = []
        self.live = LiveFigures()
        self.inbox = Inbox(self._wake.emit, self.live)
        # Events are taken once the stream has been quiet for `drain_ms` (or `MAX_WAIT` after
        # the first): a second's burst of frames becomes one drain and one repaint, not dozens.
        self._drain_ms = drain_ms
        self._first_wake = 0.0
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.timeout.connect(self._drain_due)
        self._wake.connect(self._woken, Qt.ConnectionType.QueuedConnection)
        self.events_received = 0
        self.failover = Failover(self)

    # -- who listens ----------------------------------------------------------------------

    def on(self, topic: str, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    def on_metrics(self, handler: MetricsHandler) -> None:
        """`handler(samples, changed)`: `samples` holds every target's newest live sample (the
        stream thread keeps writing it: read it, never iterate it); `changed` names the targets
        with a new one since the last call, or is None when there were many."""
        self._metrics_handlers.append(handler)

    def dispatch(self, topic: str, data: dict[str, Any]) -> None:
        """Hand one event to its listeners (also how tests and the benchmark replay a stream)."""
        if topic == "metrics":
            key = data.get("id")
            if isinstance(key, str):
                self.live.put(key, data)
                self.dispatch_metrics(self.live.take())
            return
        self.events_received += 1
        for handler in self._handlers.get(topic, ()):
            try:
                handler(data)
            except Exception:  # one bad handler must not stop the stream
                log.exception("handler for %s events failed", topic)

    def dispatch_metrics(self, changed: set[str] | None) -> None:
        samples = self.live.samples
        for handler in self._metrics_handlers:
            try:
                handler(samples, changed)
            except Exception:
                log.exception("handler for metrics failed")

    def _woken(self) -> None:
        self._first_wake = time.monotonic()
        self._drain_timer.start(self._drain_ms)

    def _drain_due(self) -> None:
        now = time.monotonic()
        quiet = now - self.inbox.last_put
        if quiet * 1000 < self._drain_ms and now - self._first_wake < MAX_WAIT:
            self._drain_timer.start(max(1, self._drain_ms - int(quiet * 1000)))
            return
        self.drain()

    def drain(self) -> int:
        """Take what the stream thread queued and hand it out; returns how many events."""
        events, live = self.inbox.take()
        for topic, data in events:
            if topic == STATUS:
                self._on_status(*data)
            elif topic == CONNECTED:
                self.resynced.emit()
            else:
                self.dispatch(topic, data)
        if live:
            self.dispatch_metrics(self.live.take())
        return len(events) + int(live)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.token is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require(self) -> Client:
        if self.client is None or self.client.token is None:
            raise ClientError("not connected to a master; log in first", code="not_connected")
        return self.client

    # -- log in and out -------------------------------------------------------------------

    async def login(
        self, url: str, username: str, password: str, verify: bool | str = True
    ) -> None:
        """Log in (raises ClientError with the server's words) and start the event stream.

        `url` may list several masters (`URL1,URL2`): the first that answers is used."""
        try:
            urls = split_urls(url)
        except ValueError as exc:
            raise ClientError(str(exc), code="bad_url") from None
        unreachable: list[ClientError] = []
        for candidate in urls:
            client = Client(candidate, verify=verify)
            try:
                out = await client.login(username, password)
                break
            except ClientError as exc:
                await client.close()
                if not exc.unreachable or len(urls) == 1:
                    raise
                unreachable.append(exc)
            except BaseException:
                await client.close()
                raise
        else:
            raise ClientError(
                "cannot reach any of the masters: " + "; ".join(e.message for e in unreachable),
                code="unreachable",
            )
        await self.logout(quiet=True)
        self.urls, self.verify = urls, verify
        self.client = client
        self.username, self.role = out.user.username, out.user.role
        self.start_stream(client)
        self.logged_in.emit(client.base_url, self.username, self.role)
        self.set_master_id("", force=True)

    @property
    def several(self) -> bool:
        """Several masters to choose from: failover is on (a single URL behaves as always)."""
        return len(self.urls) > 1

    def start_stream(self, client: Client) -> None:
        """Follow `client`'s event stream (login does this; the benchmark calls it directly)."""
        self.inbox = Inbox(self._wake.emit, self.live)  # fresh: nothing of a previous stream
        keepalive = KEEPALIVE if self.several else ONE_MASTER
        self.stream = StreamThread(client, self.inbox, keys=self.keys, keepalive=keepalive)
        self.stream.start()
        self.failover.watch(client)

    async def stop_stream(self, timeout: float = 5.0) -> None:
        """Stop following the stream (its last words are dropped); the log-in stays."""
        stream, self.stream = self.stream, None
        if stream is not None:
            self.inbox = Inbox(self._wake.emit, LiveFigures())  # the old stream's last words
            with contextlib.suppress(Exception):
                await stream.stop(timeout)

    async def switch(self, client: Client, master_id: str) -> None:
        """Go on with the same log-in on another master (`client` holds the token): its event
        stream with the same subscriptions; the views reload when it connects."""
        old = self.client
        await self.stop_stream(timeout=1.0)
        client.user = old.user if old is not None else client.user
        self.client = client
        self.start_stream(client)
        self.set_master_id(master_id, force=True)
        if old is not None:
            await old.close()

    def set_master_id(self, master_id: str, force: bool = False) -> None:
        """The id of the master the session is on (from `GET /masters`: the answering master
        comes first), for the status bar."""
        if self.client is None or (master_id == self.master_id and not force):
            return
        self.master_id = master_id
        self.master_changed.emit(self.client.base_url, master_id)

    def retry_now(self) -> None:
        """The master is back (it was restarted here): reconnect without waiting."""
        if self.stream is not None:
            self.stream.retry_now()

    async def logout(self, quiet: bool = False) -> None:
        self.failover.cancel()
        client, self.client = self.client, None
        self.master_id = ""
        if self.stream is not None:
            await self.stop_stream()
            self.live.samples.clear()
            self.live.take()
        if client is not None:
            await client.close()
            if not quiet:
                self.keys.clear()
                self.logged_out.emit()
        self.reachable = False

    async def subscribe(self, keys: Iterable[str]) -> None:
        wanted = set(keys)
        self.keys |= wanted
        if self.stream is not None:
            await self.stream.subscribe(wanted)

    async def unsubscribe(self, keys: Iterable[str]) -> None:
        gone = set(keys)
        self.keys -= gone
        if self.stream is not None:
            await self.stream.unsubscribe(gone)

    def mark_unreachable(self, reason: str) -> None:
        """The master is away although no stream said so (its stream was stopped to move)."""
        self._on_status(False, reason)

    def _on_status(self, connected: bool, reason: str) -> None:
        if connected != self.reachable or not connected:
            self.reachable = connected
            self.reachable_changed.emit(connected, reason)
