"""Which master leads: the holder of a PostgreSQL session advisory lock, taken on a connection of
its own (the lease connection) and kept while that session lives. What must run once for the
cluster runs only while `held()`.

The server ends the session, and so frees the lock, when the master dies (its socket closes at
once on kill -9; TCP keepalives find a lost host) or hangs: the session's `idle_session_timeout`
ends it when the master has sent nothing for IDLE_TIMEOUT. The others try the lock every POLL.
`held()` believes a confirmation for TRUST_FOR only, less than IDLE_TIMEOUT, so a master that
wakes from a stop has stopped believing it leads before another can have taken over.

The same session tells the others this master is alive: its server pid is written on the
master's row (`session_pid`), and a master whose session is gone is dead for the leader's jobs.

On SQLite the single master always leads, with no lock and no connection.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import make_url

from master.db.session import Database

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6764_6F73_0004  # "gdos" and 4: one 64-bit advisory lock key per database
POLL = 0.5  # seconds between rounds: the others try the lock, the leader confirms its session
IDLE_TIMEOUT = 5.0  # the server ends a lease session silent this long (a stopped master)
TRUST_FOR = 3.0  # a confirmation is believed this long (less than IDLE_TIMEOUT)
CONNECT_TIMEOUT = 5
# Server side: a peer gone without a FIN is found in about 2 + 3 x 1 s.
SESSION_OPTIONS = (
    f"-c idle_session_timeout={int(IDLE_TIMEOUT * 1000)} -c tcp_keepalives_idle=2 "
    "-c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
)
# The lock's holder as pg_locks shows a one-bigint advisory lock: high and low 32 bits.
LEADER_PID = text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND classid = :hi AND objid = :lo "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
).bindparams(hi=LEADER_LOCK_KEY >> 32, lo=LEADER_LOCK_KEY & 0xFFFFFFFF)


class Lease(Protocol):
    """What leader-only work asks before it acts."""

    def held(self) -> bool: ...


def conninfo(url: str) -> str:
    """libpq's form of a SQLAlchemy PostgreSQL URL (password kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class LeaderLease:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.master_id = ""  # set once this master is registered
        self._always = not db.is_postgres
        self._held = False
        self._confirmed = 0.0  # time.monotonic() of the last confirmation
        self._conn: Any = None  # psycopg.Connection, used from the lease's thread only
        # A thread of its own: a busy shared pool must not delay the rounds past the timeout.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gdos-lease")
        self._callbacks: list[Callable[[bool], None]] = []
        self._failing = False  # the last round failed (logged once until one succeeds)

    def held(self) -> bool:
        """This master leads now (always on SQLite)."""
        if self._always:
            return True
        return self._held and time.monotonic() - self._confirmed < TRUST_FOR

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """`callback(True)` when this master becomes the leader, `callback(False)` when it
        finds it no longer is (called on the event loop)."""
        self._callbacks.append(callback)

    async def run(self) -> None:
        """Elect and keep the lease until cancelled."""
        if self._always:
            self._notify(True)
            return
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    became = await loop.run_in_executor(self._thread, self._round)
                except Exception as exc:  # the session or the server is gone: connect again
                    self._drop(exc)
                else:
                    if became:
                        log.info("this master is the leader now")
                        self._notify(True)
                await asyncio.sleep(POLL)
        finally:
            was = self._held
            await loop.run_in_executor(self._thread, self._close)
            self._thread.shutdown(wait=False)
            if was:
                self._notify(False)

    def _round(self) -> bool:
        """One round (in a worker thread): connect when needed, then confirm the lock or try
        to take it. True when this round took it."""
        if self._conn is None:
            self._connect()
        self._failing = False
        conn = self._conn
        if self._held:
            conn.execute("SELECT 1")
            self._confirmed = time.monotonic()
            return False
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()[0]
        self._confirmed = time.monotonic()
        self._held = bool(got)
        return self._held

    def _connect(self) -> None:
        import psycopg

        conn = psycopg.connect(
            conninfo(self.db.url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            options=SESSION_OPTIONS,
            application_name=f"gdos-master {self.master_id}"[:63],
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=int(TRUST_FOR * 1000),
        )
        try:
            conn.execute(
                "UPDATE masters SET session_pid = pg_backend_pid() WHERE id = %s",
                (self.master_id,),
            )
        except Exception:
            conn.close()
            raise
        self._conn = conn

    def _drop(self, exc: BaseException) -> None:
        was = self._held
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if was:
            log.warning("this master lost the leader lease: %s", exc)
            self._notify(False)
        elif not self._failing:
            log.warning("the lease connection to the database failed (retrying): %s", exc)
        self._failing = True

    def _close(self) -> None:
        """A clean stop: the session ends, so the lock is free for the others at once."""
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _notify(self, leading: bool) -> None:
        for callback in list(self._callbacks):
            try:
                callback(leading)
            except Exception:
                log.exception("a leader change callback failed")
