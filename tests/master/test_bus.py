"""The masters' signal bus on a real PostgreSQL server: signals arrive on every listener, a
too-large payload is refused, and a listener whose server process is terminated comes back
by itself and runs its resync callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from master.db.session import Database
from master.services.bus import Bus, PayloadTooLarge
from tests.master.fake_agent import until


@pytest.fixture
async def db(pg_module_db: str) -> AsyncIterator[Database]:
    database = Database(pg_module_db)
    yield database
    database.dispose()


async def test_signals_reach_every_listener_and_big_payloads_are_refused(db: Database) -> None:
    one, two = Bus(db.url, db.engine), Bus(db.url, db.engine)
    got: list[tuple[str, str]] = []
    one.on("gdos_test", lambda p: got.append(("one", p)))
    two.on("gdos_test", lambda p: got.append(("two", p)))
    await one.start()
    await two.start()
    try:
        one.notify("gdos_test", "42")
        with db.engine.begin() as conn:  # a signal inside a transaction goes at its commit
            Bus.notify_in(conn, "gdos_test", "43")
        with pytest.raises(RuntimeError), db.engine.begin() as conn:
            Bus.notify_in(conn, "gdos_test", "rolled back")
            raise RuntimeError("roll back")
        await until(lambda: len(got) >= 4, "four signals")
        await asyncio.sleep(0.2)
        assert sorted(got) == [("one", "42"), ("one", "43"), ("two", "42"), ("two", "43")]
        with pytest.raises(PayloadTooLarge):
            one.notify("gdos_test", "x" * 8000)
        later: list[str] = []
        one.on("gdos_later", later.append)  # a channel added while listening
        await asyncio.sleep(1.5)
        two.notify("gdos_later", "late")
        await until(lambda: later == ["late"], "a signal on a channel added later")
    finally:
        await one.stop()
        await two.stop()


async def test_a_terminated_listener_reconnects_and_resyncs(db: Database) -> None:
    bus = Bus(db.url, db.engine)
    got: list[str] = []
    resynced: list[int] = []
    bus.on("gdos_test", got.append)
    bus.on_reconnect(lambda: resynced.append(len(got)))
    await bus.start()
    try:
        first = bus.backend_pid
        assert first is not None
        with db.engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first})
        await until(lambda: resynced == [0], "the resync after the reconnect")
        assert bus.backend_pid != first and bus.reconnects == 1
        bus.notify("gdos_test", "after")
        await until(lambda: got == ["after"], "a signal on the new connection")
    finally:
        await bus.stop()
