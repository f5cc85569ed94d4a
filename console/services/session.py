"""The connection to one master: log-in, the event stream, and who is listening to it.

Services register plain callbacks per topic with `on(topic, fn)` (the stream can carry thousands
of messages a second, so they do not each become a Qt signal); connectivity and log-in changes
are Qt signals for the widgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Signal

from console.client import Client, ClientError, EventStream

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], None]


class Session(QObject):
    logged_in = Signal(str, str, str)  # master URL, username, role
    logged_out = Signal()
    reachable_changed = Signal(bool, str)  # reachable, reason
    resynced = Signal()  # the stream (re)connected: reload full state, events may have been missed

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client: Client | None = None
        self.stream: EventStream | None = None
        self.reachable = False
        self.username = ""
        self.role = ""
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self.events_received = 0

    # -- who listens ----------------------------------------------------------------------

    def on(self, topic: str, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    def dispatch(self, topic: str, data: dict[str, Any]) -> None:
        """Hand one event to its listeners (also how tests and the benchmark replay a stream)."""
        self.events_received += 1
        for handler in self._handlers.get(topic, ()):
            try:
                handler(data)
            except Exception:  # one bad handler must not stop the stream
                log.exception("handler for %s events failed", topic)

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
        self.stream = EventStream(client, self.dispatch, self._on_status)
        self.stream.on_connect = self._on_stream_connect
        self._task = asyncio.ensure_future(self.stream.run())
        self.logged_in.emit(client.base_url, self.username, self.role)

    async def logout(self, quiet: bool = False) -> None:
        stream, task, client = self.stream, self._task, self.client
        self.stream = self._task = self.client = None
        if stream is not None:
            stream.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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

    async def _on_stream_connect(self) -> None:
        self.resynced.emit()

    def _on_status(self, connected: bool, reason: str) -> None:
        if connected != self.reachable or not connected:
            self.reachable = connected
            self.reachable_changed.emit(connected, reason)
