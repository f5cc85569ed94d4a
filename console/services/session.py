"""The connection to one master: log-in, the event stream, and who is listening to it.

Services register plain callbacks per topic with `on(topic, fn)` (the stream can carry thousands
of messages a second, so they do not each become a Qt signal), and `on_metrics(fn)` for live
samples, which arrive as one dict per drain (`{target id: sample}`). The stream itself is read
and parsed on its own thread (services/stream.py); the GUI thread only takes what piled up.
Connectivity and log-in changes are Qt signals for the widgets.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from console.client import Client, ClientError
from console.services.stream import CONNECTED, STATUS, Inbox, StreamThread

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], None]
MetricsHandler = Callable[[dict[str, dict[str, Any]]], None]


class Session(QObject):
    logged_in = Signal(str, str, str)  # master URL, username, role
    logged_out = Signal()
    reachable_changed = Signal(bool, str)  # reachable, reason
    resynced = Signal()  # the stream (re)connected: reload full state, events may have been missed
    _wake = Signal()  # emitted by the stream thread; delivered queued on the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client: Client | None = None
        self.stream: StreamThread | None = None
        self.reachable = False
        self.username = ""
        self.role = ""
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._metrics_handlers: list[MetricsHandler] = []
        self.inbox = Inbox(self._wake.emit)
        self._wake.connect(self.drain, Qt.ConnectionType.QueuedConnection)
        self.events_received = 0

    # -- who listens ----------------------------------------------------------------------

    def on(self, topic: str, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    def on_metrics(self, handler: MetricsHandler) -> None:
        """`handler({target id: sample})` with the newest live sample of each target."""
        self._metrics_handlers.append(handler)

    def dispatch(self, topic: str, data: dict[str, Any]) -> None:
        """Hand one event to its listeners (also how tests and the benchmark replay a stream)."""
        if topic == "metrics":
            key = data.get("id")
            if isinstance(key, str):
                self.dispatch_metrics({key: data})
            return
        self.events_received += 1
        for handler in self._handlers.get(topic, ()):
            try:
                handler(data)
            except Exception:  # one bad handler must not stop the stream
                log.exception("handler for %s events failed", topic)

    def dispatch_metrics(self, samples: dict[str, dict[str, Any]]) -> None:
        self.events_received += len(samples)
        for handler in self._metrics_handlers:
            try:
                handler(samples)
            except Exception:
                log.exception("handler for metrics failed")

    def drain(self) -> int:
        """Take what the stream thread queued and hand it out; returns how many events."""
        events, metrics = self.inbox.take()
        for topic, data in events:
            if topic == STATUS:
                self._on_status(*data)
            elif topic == CONNECTED:
                self.resynced.emit()
            else:
                self.dispatch(topic, data)
        if metrics:
            self.dispatch_metrics(metrics)
        return len(events) + len(metrics)

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
        """Log in (raises ClientError with the server's words) and start the event stream."""
        client = Client(url, verify=verify)
        try:
            out = await client.login(username, password)
        except BaseException:
            await client.close()
            raise
        await self.logout(quiet=True)
        self.client = client
        self.username, self.role = out.user.username, out.user.role
        self.start_stream(client)
        self.logged_in.emit(client.base_url, self.username, self.role)

    def start_stream(self, client: Client) -> None:
        """Follow `client`'s event stream (login does this; the benchmark calls it directly)."""
        self.inbox = Inbox(self._wake.emit)  # a fresh one: nothing of a previous stream
        self.stream = StreamThread(client, self.inbox)
        self.stream.start()

    async def logout(self, quiet: bool = False) -> None:
        stream, client = self.stream, self.client
        self.stream = self.client = None
        if stream is not None:
            self.inbox = Inbox(self._wake.emit)  # what the old one still queues goes nowhere
            with contextlib.suppress(Exception):
                await stream.stop()
        if client is not None:
            await client.close()
            if not quiet:
                self.logged_out.emit()
        self.reachable = False

    async def subscribe(self, keys: Iterable[str]) -> None:
        if self.stream is not None:
            await self.stream.subscribe(keys)

    async def unsubscribe(self, keys: Iterable[str]) -> None:
        if self.stream is not None:
            await self.stream.unsubscribe(keys)

    def _on_status(self, connected: bool, reason: str) -> None:
        if connected != self.reachable or not connected:
            self.reachable = connected
            self.reachable_changed.emit(connected, reason)
