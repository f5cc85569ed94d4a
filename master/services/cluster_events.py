"""Broadcast events on every master: each master writes the broadcast events it publishes to
`cluster_events` (one writer, in batches) and signals `gdos_events` with its id; the others
read that origin's rows past the last they took and publish them locally (listeners
included), never writing them again.

One writer per master makes an origin's `seq` order its commit order, so reading
`origin = X AND seq > last[X]` misses nothing (a single `seq > last` over every origin would
skip a row another master committed late). After a lost bus connection every origin is read
again from its last seq: the gap arrives, once and in order.

A row holds the events of one write, in order (topic `BUNDLE`, data a JSON array of
`[topic, data]`, up to `PER_ROW` of them): a node's hello publishes the node and each of its
instances, and a row per event made the writer and the readers pay per row. A row of one
event (topic and data) is read as well.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import msgspec
from sqlalchemy import Float, Table, delete, func, insert, literal_column, select

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.agents import AgentRegistry
from master.services.bus import Bus

log = logging.getLogger(__name__)

CHANNEL = "gdos_events"
TABLE = cast(Table, models.ClusterEvent.__table__)
READ_LIMIT = 500  # rows (writes) per origin per read; more are read next turn
PER_ROW = 1000  # events per row at most
BUNDLE = "*"  # the topic of a row holding several events
KEEP = 600.0  # seconds events are kept (a listener away longer resyncs from the API)
PRUNE_EVERY = 60.0
MAX_PENDING = 100_000  # events waiting for a database that is away; older ones are dropped
_NOW = literal_column("extract(epoch from clock_timestamp())", Float)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_decode_bundle = msgspec.json.Decoder(list[tuple[str, dict[str, Any]]]).decode


class ClusterEvents:
    def __init__(self, db: Database, hub: Hub, bus: Bus, agents: AgentRegistry) -> None:
        self.db = db
        self.hub = hub
        self.bus = bus
        self.agents = agents
        self.last: dict[str, int] = {}  # origin -> the last seq published here
        self.floor = 0  # seq at this master's start: what came before is history
        self._pending: list[tuple[str, str]] = []  # (topic JSON, data JSON) to write
        # Statements committed with the next batch, after its events (routed commands).
        self._carried: list[tuple[str, dict[str, Any], asyncio.Future[None]]] = []
        self._wake_writer = asyncio.Event()
        self.appended = 0  # events handed to the writer so far
        self.committed = Mark()  # of those, how many are committed (in order)
        self._dirty: set[str] = set()  # origins with rows to read
        self._wake_reader = asyncio.Event()
        self.signals = 0  # signals of other masters' rows so far
        self.read = Mark()  # signals whose rows have been read and published here
        self._tasks: list[asyncio.Task[None]] = []
        # Called with each event another master published, after the hub has it (by topic).
        self.on_remote: dict[str, list[Callable[[dict[str, Any]], None]]] = {}

    @property
    def me(self) -> str:
        return self.agents.master_id or ""

    def attach(self) -> None:
        """Relay this master's broadcast events and take the others' (once registered)."""
        with self.db.engine.connect() as conn:
            self.floor = int(conn.execute(select(func.max(TABLE.c.seq))).scalar() or 0)
        self.hub.relay = self.append
        self.bus.on(CHANNEL, self._on_signal)
        self.bus.on_reconnect(self.resync)

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_forever()),
            asyncio.create_task(self._read_forever()),
        ]
        try:
            while True:
                await asyncio.sleep(PRUNE_EVERY)
                try:
                    await asyncio.to_thread(self.prune)
                except Exception:
                    log.warning("pruning cluster events failed", exc_info=True)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- writing this master's events -----------------------------------------------------

    def append(self, topic: str, data: dict[str, Any]) -> None:
        try:
            self._pending.append((_encode(topic).decode(), _encode(data).decode()))
        except (TypeError, msgspec.EncodeError):
            log.exception("a %s event cannot be shared with the other masters", topic)
            return
        self.appended += 1
        if len(self._pending) > MAX_PENDING:
            dropped = len(self._pending) - MAX_PENDING
            del self._pending[:dropped]
            self.committed.advance(self.committed.value + dropped)  # never coming: none waits
        self._wake_writer.set()

    async def carry(self, statement: str, params: dict[str, Any]) -> None:
        """Run `statement` (psycopg's `%(name)s` parameters) in the transaction that writes
        the events published so far, after them: a routed command's row and its signal reach
        the target with the events before it, in one commit. Raises what the write raised."""
        done = asyncio.get_running_loop().create_future()
        self._carried.append((statement, params, done))
        self._wake_writer.set()
        await done

    async def written(self, timeout: float = 1.0) -> None:
        """Wait (at most `timeout`) until the events published so far are committed: a routed
        command waits for them, so its target has them before the node's answer. Events
        published meanwhile are not waited for (under a steady flow there always are some)."""
        await self.committed.reach(self.appended, timeout)

    async def read_up(self, timeout: float = 1.0) -> None:
        """Wait (at most `timeout`) until the rows of every signal received so far have been
        read (not those of signals received meanwhile)."""
        await self.read.reach(self.signals, timeout)

    async def _write_forever(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            batch, self._pending = self._pending, []
            carried, self._carried = self._carried, []
            if not batch and not carried:
                continue
            statements = [(statement, params) for statement, params, _ in carried]
            try:
                await asyncio.to_thread(self._insert, batch, statements)
            except Exception as exc:  # the database away: keep them, in order, and try again
                for _, _, done in carried:  # their callers say so (no retry behind their back)
                    if not done.done():
                        done.set_exception(exc)
                if not batch:
                    continue
                log.warning("sharing %d events with the other masters failed", len(batch))
                self._pending[:0] = batch
                await asyncio.sleep(1.0)
                self._wake_writer.set()
            else:
                self.committed.advance(self.committed.value + len(batch))
                for _, _, done in carried:
                    if not done.done():
                        done.set_result(None)

    def _insert(
        self, batch: list[tuple[str, str]], carried: list[tuple[str, dict[str, Any]]] | None = None
    ) -> None:
        rows = [
            {"origin": self.me, "topic": BUNDLE, "data": bundle(batch[at : at + PER_ROW])}
            for at in range(0, len(batch), PER_ROW)
        ]
        with self.db.engine.begin() as conn:
            if rows:
                conn.execute(insert(TABLE).values(at=_NOW), rows)
                Bus.notify_in(conn, CHANNEL, self.me)
            for statement, params in carried or ():
                conn.exec_driver_sql(statement, params)

    # -- reading the others' --------------------------------------------------------------

    def _on_signal(self, origin: str) -> None:
        if origin and origin != self.me:
            self.signals += 1
            self._dirty.add(origin)
            self._wake_reader.set()

    def resync(self) -> None:
        """Signals may have been missed: read every origin that has rows past its last seq."""
        with self.db.engine.connect() as conn:
            heads = conn.execute(
                select(TABLE.c.origin, func.max(TABLE.c.seq))
                .where(TABLE.c.origin != self.me)
                .group_by(TABLE.c.origin)
            ).all()
        for origin, head in heads:
            if head > self.last.get(origin, self.floor):
                self._dirty.add(origin)
        if self._dirty:
            self._wake_reader.set()

    async def _read_forever(self) -> None:
        while True:
            await self._wake_reader.wait()
            self._wake_reader.clear()
            origins, self._dirty = self._dirty, set()
            signals = self.signals  # a round covers the signals received before it starts
            after = {origin: self.last.get(origin, self.floor) for origin in origins}
            try:
                found = await asyncio.to_thread(self._read, after)
            except Exception:
                log.warning("reading the other masters' events failed", exc_info=True)
                self._dirty |= origins
                await asyncio.sleep(1.0)
                self._wake_reader.set()
                continue
            # Origins read together are merged by seq: the order they were written in.
            merged = sorted((row[0], origin, row) for origin, rows in found.items() for row in rows)
            for seq, origin, (_, topic, data) in merged:
                if seq <= self.last.get(origin, self.floor):
                    continue
                self.last[origin] = seq
                try:
                    events = _decode_bundle(data) if topic == BUNDLE else [(topic, _decode(data))]
                except msgspec.DecodeError:
                    log.exception(
                        "another master's events (row %d of %s) are unreadable", seq, origin
                    )
                    continue
                for event_topic, event in events:
                    self._publish(event_topic, event)
            more = [origin for origin, rows in found.items() if len(rows) == READ_LIMIT]
            if more:  # the rest next round, which covers these signals too
                self._dirty.update(more)
                self._wake_reader.set()
            else:
                self.read.advance(signals)

    def _publish(self, topic: str, event: dict[str, Any]) -> None:
        self.hub.deliver(topic, event)
        for callback in self.on_remote.get(topic, ()):
            try:
                callback(event)
            except Exception:  # an observer's bug must not stop the reader
                log.exception("handling another master's %s event failed", topic)

    def _read(self, after: dict[str, int]) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        with self.db.engine.connect() as conn:
            for origin, seq in after.items():
                found[origin] = list(
                    conn.execute(
                        select(TABLE.c.seq, TABLE.c.topic, TABLE.c.data)
                        .where(TABLE.c.origin == origin, TABLE.c.seq > seq)
                        .order_by(TABLE.c.seq)
                        .limit(READ_LIMIT)
                    ).all()
                )
        return found

    def prune(self) -> None:
        """This master's old rows; any master's much older ones (a master gone for good)."""
        with self.db.engine.begin() as conn:
            conn.execute(delete(TABLE).where(TABLE.c.origin == self.me, TABLE.c.at < _NOW - KEEP))
            conn.execute(delete(TABLE).where(TABLE.c.at < _NOW - 2 * KEEP))


def bundle(events: list[tuple[str, str]]) -> str:
    """One row's data: `[[topic, data], ...]` from events already encoded as JSON."""
    return "[" + ",".join(f"[{topic},{data}]" for topic, data in events) + "]"


class Mark:
    """A count that only grows, and waiters for it to reach a value."""

    def __init__(self) -> None:
        self.value = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def advance(self, value: int) -> None:
        self.value = max(self.value, value)
        waiting = []
        for target, fut in self._waiters:
            if target <= self.value:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((target, fut))
        self._waiters = waiting

    async def reach(self, value: int, timeout: float) -> None:
        """Return once the count is `value` or more, or after `timeout` seconds."""
        if self.value >= value:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((value, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters = [(t, f) for t, f in self._waiters if f is not fut]
