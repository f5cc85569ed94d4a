"""Webhook notifications: a bounded queue, a few workers, retries with exponential backoff.

`enqueue` never blocks and never waits for the network: when the queue is full the
notification is dropped and counted (the alert itself is already stored and on the event
stream). A delivery's `done` callback hears how it ended (sent or not), once. A failed attempt (connection error, timeout, 408, 429, 5xx) is retried later by a
timer that puts it back in the queue, so a dead endpoint never holds a worker while it waits.
Other 4xx answers are final.
"""

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from master.lean_imports import load_httpx
from protocol import __version__

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass
class Delivery:
    url: str
    body: bytes
    event: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    attempt: int = 1
    done: Callable[[bool], None] | None = None  # told once: sent, or given up / dropped

    def finish(self, sent: bool) -> None:
        if self.done is not None:
            done, self.done = self.done, None
            try:
                done(sent)
            except Exception:
                log.exception(
                    "webhook %s: recording how delivery %s ended failed", self.url, self.id
                )


class Notifier:
    def __init__(
        self,
        maxsize: int = 1000,
        workers: int = 4,
        attempts: int = 5,
        base_delay: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize)
        self.maxsize = maxsize
        self.workers = workers
        self.attempts = attempts
        self.base_delay = base_delay
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retried = 0
        self._busy = 0
        self._waiting: set[asyncio.TimerHandle] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize() + len(self._waiting)

    def enqueue(self, url: str, payload: dict[str, Any], event: str) -> bool:
        return self.send(url, encode(payload), event)

    def send(
        self,
        url: str,
        body: bytes,
        event: str,
        delivery_id: str | None = None,
        done: Callable[[bool], None] | None = None,
    ) -> bool:
        """Queue a body as it is (a delivery id that a resend keeps, so receivers can tell)."""
        d = Delivery(url, body, event, done=done)
        if delivery_id:
            d.id = delivery_id
        return self._put(d)

    def _put(self, d: Delivery) -> bool:
        try:
            self.queue.put_nowait(d)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full: dropped a %s notification for %s", d.event, d.url)
            d.finish(False)
            return False
        return True

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for handle in self._waiting:
            handle.cancel()
        self._waiting.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _work(self) -> None:
        while True:
            d = await self.queue.get()
            self._busy += 1
            try:
                await self._deliver(d)
            finally:
                self._busy -= 1

    async def _deliver(self, d: Delivery) -> None:
        load_httpx()  # without httpx's command line
        import httpx  # at the first webhook: most masters never send one, and start sooner

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        headers = {
            "content-type": "application/json",
            "user-agent": f"gdos-master/{__version__}",
            "x-gdos-event": d.event,
            "x-gdos-delivery": d.id,
            "x-gdos-attempt": str(d.attempt),
        }
        try:
            r = await self._client.post(d.url, content=d.body, headers=headers)
        except httpx.HTTPError as exc:
            problem, retry = f"{type(exc).__name__}: {exc}", True
        else:
            if r.status_code < 300:
                self.sent += 1
                d.finish(True)
                return
            problem = f"HTTP {r.status_code}"
            retry = r.status_code >= 500 or r.status_code in RETRY_STATUSES
        if retry and d.attempt < self.attempts and len(self._waiting) < self.maxsize:
            delay = self.base_delay * 2 ** (d.attempt - 1) * random.uniform(0.8, 1.2)
            d.attempt += 1
            self.retried += 1
            log.info("webhook %s: %s; retry %d in %.1f s", d.url, problem, d.attempt, delay)
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def again() -> None:
                if handle is not None:
                    self._waiting.discard(handle)
                self._put(d)

            handle = loop.call_later(delay, again)
            self._waiting.add(handle)
            return
        self.failed += 1
        log.warning("webhook %s gave up after %d attempt(s): %s", d.url, d.attempt, problem)
        d.finish(False)

    async def drain(self, timeout: float = 10.0) -> None:
        """Tests and shutdown: wait until nothing is queued or waiting for a retry."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.depth or self._busy:
                    await asyncio.sleep(0.05)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
