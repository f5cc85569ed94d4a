"""Bearer tokens verified a moment ago, so most API requests skip the database read (and the
worker thread it takes) that checking their credential costs.

An entry lives `TTL` seconds at most; removing a user, a node or restoring a backup forgets
them all at once. Only a master alone on its database keeps any: another master's change
could not reach this cache. Past `REFRESH_SHARE` of its life an entry is `due`: the caller
verifies the token again in the background, so a steady poller never waits for that read
(each wait was a worker thread's round trip, long loop turns in a fan-out or a storm), and
no entry is answered longer than `TTL` after its last verification.
"""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
TTL = 2.0
REFRESH_SHARE = 0.5  # of an entry's life, after which `due` asks for a verification
MAX_ENTRIES = 10_000  # tokens; beyond, the cache starts over (a flood of distinct tokens)


class TokenCache(Generic[T]):
    def __init__(
        self, enabled: bool = True, ttl: float = TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = enabled
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[T, float, float]] = {}  # value, expiry, due from
        self._refreshing: set[str] = set()  # tokens whose verification ahead is under way

    def get(self, token: str) -> T | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        value, until, _ = entry
        if self.clock() >= until:
            del self._entries[token]
            return None
        return value

    def due(self, token: str) -> bool:
        """True once per entry past `REFRESH_SHARE` of its life (until `put` or `forget`):
        the caller verifies the token again ahead of its expiry."""
        entry = self._entries.get(token)
        if entry is None or token in self._refreshing or self.clock() < entry[2]:
            return False
        self._refreshing.add(token)
        return True

    def verified_ahead(self, token: str, value: T | None) -> None:
        """The verification `due` asked for: remembered afresh, or forgotten (no longer
        valid); nothing when the cache forgot the token meanwhile (a removal: its answer may
        be older than that)."""
        if token not in self._refreshing:
            return
        if value is None:
            self.forget(token)
        else:
            self.put(token, value)

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)
        self._refreshing.discard(token)

    def put(self, token: str, value: T) -> None:
        if not self.enabled:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._refreshing.discard(token)
        now = self.clock()
        self._entries[token] = (value, now + self.ttl, now + self.ttl * REFRESH_SHARE)

    def forget_all(self) -> None:
        self._entries.clear()
        self._refreshing.clear()
