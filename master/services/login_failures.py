"""The login throttle of several masters: a source's failed logins and its lock-out live in the
database (`login_failures`), so five failures on one master lock the source out on every
master. One statement per failure (an upsert that counts and locks in the same write), by the
database's clock. The rule is master/services/throttle.py's (which one master keeps in memory).
"""

from typing import cast

from sqlalchemy import Table, delete, select, text

from master.db import models
from master.db.session import Database

# The record of one more failure: the count starts over after `window` seconds without one;
# from `free` failures on, the source is locked out for 2^(failures - free) s, at most `cap`.
_FAILED = text(
    """
    INSERT INTO login_failures AS f (source, failures, last_failure, locked_until)
    VALUES (:source, 1, :now, CASE WHEN :free <= 1 THEN :now + 1 ELSE 0 END)
    ON CONFLICT (source) DO UPDATE SET
        failures = CASE WHEN :now - f.last_failure > :window THEN 1 ELSE f.failures + 1 END,
        last_failure = :now,
        locked_until = CASE
            WHEN (CASE WHEN :now - f.last_failure > :window THEN 1 ELSE f.failures + 1 END)
                 >= :free
            THEN :now + LEAST(:cap, power(2, (CASE WHEN :now - f.last_failure > :window
                 THEN 1 ELSE f.failures + 1 END) - :free))
            ELSE f.locked_until
        END
    """
)
TABLE = cast(Table, models.LoginFailure.__table__)
_NOW = text("SELECT extract(epoch from clock_timestamp())")
_FORGET = 10_000  # rows kept at most: the oldest failures are forgotten first
TRIM_EVERY = 256  # failures between trims


class SharedLoginThrottle:
    """LoginThrottle's interface over the database (PostgreSQL)."""

    def __init__(
        self,
        db: Database,
        free_failures: int = 5,
        window: float = 900.0,
        max_lockout: float = 300.0,
        max_sources: int = _FORGET,
    ) -> None:
        self.db = db
        self.free_failures = free_failures
        self.window = window
        self.max_lockout = max_lockout
        self.max_sources = max_sources
        self._failures = 0  # recorded by this master, for the trim

    def retry_after(self, source: str, now: float | None = None) -> float:
        """Seconds this source must wait before trying again (0: go ahead)."""
        with self.db.engine.connect() as conn:
            now = float(conn.execute(_NOW).scalar() or 0.0) if now is None else now
            until = conn.execute(
                select(TABLE.c.locked_until).where(TABLE.c.source == source[:64])
            ).scalar()
        return max(0.0, float(until) - now) if until is not None else 0.0

    def failed(self, source: str, now: float | None = None) -> None:
        now = self.db.now() if now is None else now  # the clock every master agrees on
        params = {
            "source": source[:64],
            "now": now,
            "free": self.free_failures,
            "window": self.window,
            "cap": self.max_lockout,
        }
        with self.db.engine.begin() as conn:
            conn.execute(_FAILED, params)
        self._failures += 1
        if self._failures % TRIM_EVERY == 0:  # now and then: the table stays bounded
            self._trim()

    def succeeded(self, source: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(TABLE).where(TABLE.c.source == source[:64]))

    def _trim(self) -> None:
        keep = select(TABLE.c.source).order_by(TABLE.c.last_failure.desc()).limit(self.max_sources)
        with self.db.engine.begin() as conn:
            conn.execute(delete(TABLE).where(TABLE.c.source.not_in(keep)))
