"""The masters' signal bus: PostgreSQL LISTEN/NOTIFY on one dedicated connection per master, as
AWX's dispatcher does. Signals carry ids, never data: the data is in the database.

    bus = Bus(dsn)                      # built by the Services wiring, only on PostgreSQL
    bus.on("gdos_x", callback)          # callback(payload: str), called on the event loop
    bus.on_reconnect(resync)            # resync(): signals may have been missed, read again
    await bus.start() ... await bus.stop()
    Bus.notify_in(conn, "gdos_x", "id") # inside a caller's transaction: sent at its commit
    bus.notify("gdos_x", "id")          # on its own
    await bus.fetch(sql, params)        # one statement on the bus's own sending connection

Payloads are refused past `MAX_PAYLOAD` bytes (PostgreSQL's limit is 8,000). The listening
connection reconnects by itself with backoff; `on_reconnect` callbacks run after every
reconnect (not the first connect), once every channel is listened to again. Channels are
listened to while the bus runs too. `fetch` runs one statement in autocommit on a second
connection, one network round trip, without blocking the event loop (for the short hot
statements of routed commands; a statement that calls pg_notify sends at its own end). A
master on SQLite has no bus: the wiring gives None.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, select

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7_999  # bytes; PostgreSQL refuses 8,000 and more
BACKOFF_MIN, BACKOFF_MAX = 0.2, 10.0
WAKE = 1.0  # seconds between looks for channels added while listening
Callback = Callable[[str], None]


class PayloadTooLarge(ValueError):
    """A bus payload must be small: ids, not data."""


def check_payload(payload: str) -> None:
    if len(payload.encode()) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"a bus payload holds ids, at most {MAX_PAYLOAD} bytes")


def psycopg_dsn(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (`postgresql+psycopg://` -> `postgresql://`)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Bus:
    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.dsn = psycopg_dsn(url)
        self.engine = engine
        self._callbacks: dict[str, list[Callback]] = {}
        self._resyncs: list[Callable[[], None]] = []
        self._listening: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None  # psycopg.AsyncConnection while connected
        self._sender: Any = None  # the connection `fetch` uses, opened at its first use
        self._sending = asyncio.Lock()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None  # the listening connection's server process

    def on(self, channel: str, callback: Callback) -> None:
        """Call `callback(payload)` for every signal on `channel` (from any master, this one
        included)."""
        self._callbacks.setdefault(channel, []).append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._resyncs.append(callback)

    async def start(self) -> None:
        """Listen in the background; returns once the first connection listens (or failed
        once: the bus keeps trying by itself)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close()

    async def fetch(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement (psycopg's `%(name)s` parameters) in autocommit; its rows. A lost
        connection is opened again and the statement tried once more: statements given here
        must bear running twice."""
        import psycopg

        async with self._sending:
            for attempt in (1, 2):
                try:
                    if self._sender is None or self._sender.closed:
                        self._sender = await self._open("gdos-bus-send")
                    cur = await self._sender.execute(query, params)
                    return list(await cur.fetchall()) if cur.description else []
                except psycopg.OperationalError:
                    with contextlib.suppress(Exception):
                        await self._sender.close()
                    self._sender = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def notify(self, channel: str, payload: str) -> None:
        """Send one signal now, in a transaction of its own."""
        assert self.engine is not None, "the bus sends through the master's engine"
        with self.engine.begin() as conn:
            self.notify_in(conn, channel, payload)

    @staticmethod
    def notify_in(conn: Connection, channel: str, payload: str) -> None:
        """Send a signal at the commit of `conn`'s transaction (none if it rolls back)."""
        check_payload(payload)
        conn.execute(select(func.pg_notify(channel, payload)))

    # -- the listening connection ---------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        first = True
        while True:
            try:
                await self._connect()
                if not first:
                    self.reconnects += 1
                    log.info("bus: listening again after a lost connection; resyncing")
                    self._resync()
                first = False
                delay = BACKOFF_MIN
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server restarted, the link dropped, a terminate
                log.warning("bus: connection lost (%s); reconnecting", str(exc).strip() or exc)
            self.connected.clear()
            await self._close()
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _open(self, name: str) -> Any:
        import psycopg

        # Keepalives: a server or a link that went silent is noticed in seconds, not hours.
        return await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            application_name=name,
        )

    async def _connect(self) -> None:
        self._conn = await self._open("gdos-bus")
        self.backend_pid = self._conn.info.backend_pid
        self._listening = set()
        await self._listen_to_new()
        self.connected.set()

    async def _listen_to_new(self) -> None:
        from psycopg import sql

        for channel in list(self._callbacks):
            if channel not in self._listening:
                await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening.add(channel)

    async def _listen(self) -> None:
        while True:
            async for note in self._conn.notifies(timeout=WAKE):
                self._deliver(note.channel, note.payload)
            await self._listen_to_new()
            await self._conn.execute("SELECT 1")  # a dead connection says so here

    def _deliver(self, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # one user's bug must not stop the bus
                log.exception("bus callback for %s failed", channel)

    def _resync(self) -> None:
        for callback in self._resyncs:
            try:
                callback()
            except Exception:
                log.exception("bus resync callback failed")

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
