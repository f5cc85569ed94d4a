"""The `/api/v1/events` WebSocket: every change the master announces, reconnecting by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from console.client.transport import API, Transport, ssl_context

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], None]
StatusHandler = Callable[[bool, str], None]


@dataclass(frozen=True)
class Keepalive:
    """Seconds between pings, for the pong, and for the close handshake of a dead link."""

    ping_interval: float = 20.0  # websockets' defaults: a lost master is noticed in 40-50 s
    ping_timeout: float = 20.0
    close_timeout: float = 10.0


ONE_MASTER = Keepalive()  # as it always was: one master, nowhere else to go


class EventStream:
    """The `/api/v1/events` WebSocket, reconnecting by itself with jittered backoff.

    `on_event(topic, data)` is called for every event (the stream asks for batched frames: one
    JSON array of events per frame); `on_status(connected, reason)` on every change of
    connectivity. Subscriptions (`metrics:<id>`, `log:<id>:<name>`) are remembered and
    sent again after each reconnect. `run()` returns only when `stop()` is called.
    """

    def __init__(
        self,
        client: Transport,
        on_event: EventHandler | None = None,
        on_status: StatusHandler | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        batch: bool = True,
        keepalive: Keepalive = ONE_MASTER,
    ) -> None:
        self.client = client
        # A console with several masters pings more often, to leave a hung master in seconds.
        self.keepalive = keepalive
        self.batch = batch
        self.on_event = on_event or (lambda topic, data: None)
        self.on_status = on_status or (lambda connected, reason: None)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.keys: set[str] = set()
        self.connected = False
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # ends the wait between two tries: stop, or try now
        self.on_connect: Callable[[], Awaitable[None]] | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        base = self.client.base_url
        scheme = "wss://" if base.startswith("https://") else "ws://"
        return scheme + base.split("://", 1)[1] + API + "/events"

    async def subscribe(self, keys: Iterable[str]) -> None:
        new = set(keys) - self.keys
        self.keys |= new
        if new:
            await self._send({"subscribe": sorted(new)})

    async def unsubscribe(self, keys: Iterable[str]) -> None:
        gone = set(keys) & self.keys
        self.keys -= gone
        if gone:
            await self._send({"unsubscribe": sorted(gone)})

    async def _send(self, msg: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps(msg))

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    def retry_now(self) -> None:
        """Between two tries: try again now (the master is known to be back)."""
        self._wake.set()

    async def run(self) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            reason = ""
            try:
                async with websockets.connect(
                    self.url,
                    additional_headers=self.client._headers(),
                    ssl=_ws_ssl(self.client),
                    open_timeout=10,
                    max_size=16 << 20,
                    ping_interval=self.keepalive.ping_interval,
                    ping_timeout=self.keepalive.ping_timeout,
                    close_timeout=self.keepalive.close_timeout,
                ) as ws:
                    self._ws = ws
                    if self._stopping.is_set():  # stopped while opening: nothing closed it
                        break
                    if self.batch:  # a JSON array of events per frame: far cheaper at volume
                        await ws.send(json.dumps({"batch": True}))
                    if self.keys:
                        await ws.send(json.dumps({"subscribe": sorted(self.keys)}))
                    self.connected = True
                    backoff = self.min_backoff
                    self.on_status(True, "")
                    if self.on_connect is not None:
                        await self.on_connect()
                    async for raw in ws:
                        self._dispatch(raw)
                    reason = _close_reason(ws)
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                reason = _describe(exc)
            finally:
                self._ws = None
            if self._stopping.is_set():
                break
            if self.connected:
                self.connected = False
                self.reconnects += 1
            self.on_status(False, reason or "the event stream closed")
            delay = backoff * (0.75 + random.random() / 2)
            backoff = min(self.max_backoff, backoff * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if not self._stopping.is_set() and self._wake.is_set():
                backoff = self.min_backoff
            self._wake.clear()
        if self.connected:
            self.connected = False
            self.on_status(False, "stopped")

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("ignored a malformed event: %.120r", raw)
            return
        on_event = self.on_event
        for event in msg if type(msg) is list else (msg,):
            try:
                topic, data = event["topic"], event["data"]
            except (KeyError, TypeError):
                log.warning("ignored a malformed event: %.120r", event)
                continue
            if type(data) is dict:
                on_event(str(topic), data)


def _ws_ssl(client: Transport) -> ssl.SSLContext | None:
    return ssl_context(client.verify) if client.base_url.startswith("https://") else None


def _close_reason(ws: ClientConnection) -> str:
    code = ws.close_code
    text = ws.close_reason or ""
    if code == 4401:
        return "the master refused the event stream: log in again"
    if code == 1013:
        return "the master cut the event stream (this console was too slow)"
    if code in (1001, 1006, None):
        return "the master went away"
    return f"the event stream closed ({code} {text})".strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, websockets.InvalidStatus):
        return f"the master refused the event stream ({exc.response.status_code})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
