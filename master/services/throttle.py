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
