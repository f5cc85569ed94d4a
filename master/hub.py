"""Event fan-out to console subscribers (the `/api/v1/events` stream).

Each subscriber has a bounded queue: a slow reader is cut off (close code 1013) rather than
letting the master's memory grow. State topics reach everybody; the high-volume topics
(`metrics:<id>`, `log:<instance>:<name>`) only reach those who subscribed to that key.
With several masters, `relay` also hands each broadcast event to the other masters
(master/services/cluster_events.py), which `deliver` theirs here without relaying them again.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode  # several times faster than json.dumps, once per event
Listener = Callable[[dict[str, Any]], None]

BROADCAST_TOPICS = frozenset(
    {"node", "instance", "operation", "alert", "system", "package", "module", "alert_rule", "audit"}
)


class Subscriber:
    def __init__(self, maxsize: int = 10_000) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.keys: set[str] = set()
        self.overflowed = asyncio.Event()
        self.batch = False  # the client asked for JSON arrays of events (one frame per burst)
        # A peer master relaying keyed topics to its own consoles: no state topics, and its keys
        # are never forwarded again (`console_keys`), so two masters cannot relay in a loop.
        self.peer = False

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed.set()


class Hub:
    def __init__(self) -> None:
        self._subs: set[Subscriber] = set()
        self._listeners: dict[str, list[Listener]] = {}
        self.published = 0
        # Called when the set of subscribed keys may have changed (log follows start and stop).
        self.key_listeners: list[Callable[[], None]] = []
        self._wanted: frozenset[str] | None = None  # every subscribed key, until they change
        # Several masters: broadcast events published here go to the other masters too.
        self.relay: Callable[[str, dict[str, Any]], None] | None = None

    def listen(self, topic: str, listener: Listener) -> None:
        """Call `listener(data)` in-process for every event of a broadcast topic (the alert
        engine and the instance directory follow state changes this way)."""
        self._listeners.setdefault(topic, []).append(listener)

    def subscribe(self, maxsize: int = 10_000) -> Subscriber:
        sub = Subscriber(maxsize)
        self._subs.add(sub)
        self._wanted = None
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        self._wanted = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def has_key(self, key: str) -> bool:
        return key in self.wanted_keys()

    def subscribed_keys(self) -> set[str]:
        return set(self.wanted_keys())

    def wanted_keys(self) -> frozenset[str]:
        """Every key some subscriber wants, for hot paths to test rows against (one set
        lookup each). Cached: whoever changes a subscriber's keys calls `keys_changed`."""
        wanted = self._wanted
        if wanted is None:
            wanted = self._wanted = frozenset().union(*(s.keys for s in self._subs))
        return wanted

    def console_keys(self) -> set[str]:
        """The keys consoles of this master want (peer masters' subscriptions left out)."""
        return set().union(*(s.keys for s in self._subs if not s.peer))

    def keys_changed(self) -> None:
        self._wanted = None
        for listener in self.key_listeners:
            listener()

    def has_keyed_subscribers(self) -> bool:
        """Cheap pre-check for hot paths: does anybody want any keyed (high-volume) topic?"""
        return bool(self.wanted_keys())

    def queue_depths(self) -> list[int]:
        """Safe from another thread (a scrape): works on a copy of the subscriber set."""
        return [s.queue.qsize() for s in list(self._subs)]

    def publish(self, topic: str, data: dict[str, Any], key: str | None = None) -> None:
        """Send to every subscriber (state topics) or to those subscribed to `key`."""
        if key is None and self.relay is not None and topic in BROADCAST_TOPICS:
            self.relay(topic, data)
        self.deliver(topic, data, key)

    def deliver(self, topic: str, data: dict[str, Any], key: str | None = None) -> None:
        """Publish here only (an event another master published, relayed already)."""
        if key is None:
            for listener in self._listeners.get(topic, ()):
                try:
                    listener(data)
                except Exception:  # an observer's bug must not break the publisher's change
                    log.exception("event listener for %s failed", topic)
        if not self._subs:
            return
        text = _encode({"topic": topic, "data": data}).decode()
        self.published += 1
        for sub in self._subs:
            if key in sub.keys if key is not None else not sub.peer:
                sub.offer(text)

    def offer_keyed(self, key: str, text: str) -> None:
        """Offer an event already encoded (`{"topic","data"}` text) to the subscribers of `key`."""
        self.published += 1
        for sub in self._subs:
            if key in sub.keys:
                sub.offer(text)
