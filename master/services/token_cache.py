"""Bearer tokens verified a moment ago, so most API requests skip the database read (and the
worker thread it takes) that checking their credential costs.

An entry lives `TTL` seconds at most; removing a user, a node or restoring a backup forgets
them all at once. Only a master alone on its database keeps any: another master's change
could not reach this cache.
"""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
TTL = 2.0
MAX_ENTRIES = 10_000  # tokens; beyond, the cache starts over (a flood of distinct tokens)


class TokenCache(Generic[T]):
    def __init__(
        self, enabled: bool = True, ttl: float = TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = enabled
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[T, float]] = {}

    def get(self, token: str) -> T | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        value, until = entry
        if self.clock() >= until:
            del self._entries[token]
            return None
        return value

    def put(self, token: str, value: T) -> None:
        if not self.enabled:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token] = (value, self.clock() + self.ttl)

    def forget_all(self) -> None:
        self._entries.clear()
