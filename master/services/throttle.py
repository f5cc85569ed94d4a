"""Slow down password guessing: per source, failed logins buy an exponentially growing lockout.

Bounded memory (the oldest sources are forgotten first) and no database writes, so a flood of
bad logins costs the master almost nothing.
"""

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        free_failures: int = 5,
        window: float = 900.0,
        max_lockout: float = 300.0,
        max_sources: int = 10_000,
    ) -> None:
        self.free_failures = free_failures
        self.window = window
        self.max_lockout = max_lockout
        self.max_sources = max_sources
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()  # login runs in the threadpool

    def retry_after(self, source: str, now: float | None = None) -> float:
        """Seconds this source must wait before trying again (0: go ahead)."""
        now = time.time() if now is None else now
        with self._lock:
            rec = self._records.get(source)
            if rec is None:
                return 0.0
            return max(0.0, rec.locked_until - now)

    def failed(self, source: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            rec = self._records.pop(source, None) or _Record()
            if now - rec.last_failure > self.window:
                rec.failures = 0
            rec.failures += 1
            rec.last_failure = now
            extra = rec.failures - self.free_failures
            if extra >= 0:
                rec.locked_until = now + min(self.max_lockout, 2.0**extra)
            self._records[source] = rec
            while len(self._records) > self.max_sources:
                self._records.popitem(last=False)

    def succeeded(self, source: str) -> None:
        with self._lock:
            self._records.pop(source, None)


class LogBudget:
    """At most `lines` log lines per key in each `window` seconds, so that a peer sending junk
    at a high rate cannot fill the disk with the master's log. What is held back is counted and
    told with the next line let through. Bounded memory (the stalest keys are forgotten)."""

    def __init__(self, lines: int = 10, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.lines = lines
        self.window = window
        self.max_keys = max_keys
        self._spent: OrderedDict[str, tuple[float, int, int]] = OrderedDict()  # start, used, held

    def allow(self, key: str, now: float | None = None) -> int | None:
        """None: stay quiet; else log, adding that this many lines were held back before it."""
        now = time.monotonic() if now is None else now
        start, used, held = self._spent.pop(key, (now, 0, 0))
        if now - start >= self.window:
            start, used = now, 0
        if used >= self.lines:
            self._spent[key] = (start, used, held + 1)
            answer = None
        else:
            self._spent[key] = (start, used + 1, 0)
            answer = held
        while len(self._spent) > self.max_keys:
            self._spent.popitem(last=False)
        return answer
