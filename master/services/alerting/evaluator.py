"""The state machine of one (rule, target) pair, fed values and times; no I/O.

    ok --breach--> pending --breached for for_seconds--> firing
    firing --cleared (beyond the hysteresis margin) for resolve_for_seconds--> ok

Debounce: a value that dips back to the good side resets `pending`, so a value oscillating
around the threshold never fires unless it stays bad for `for_seconds`. Hysteresis: once
firing, only a value clearly on the good side counts toward resolving, and any bad value
restarts that count, so an alert does not resolve and fire again with every wobble.

A sample describes the `interval` before its timestamp, so the first bad sample starts the
breach at the start of its window: `cpu > 50 for 3s` fires when three seconds of samples were
above 50, not four. Between samples the last value holds for a while (`fresh_for`), so a
periodic tick fires on time rather than at the next sample, but never on stale data.
"""

from enum import Enum
from typing import Any

from master.services.alerting.rules import Rule

EPSILON = 1e-6


class Transition(Enum):
    FIRE = "fire"
    RESOLVE = "resolve"


class Track:
    __slots__ = ("alert_id", "bad_since", "fired_at", "fresh_for", "good_since", "seen_at", "value")

    def __init__(self) -> None:
        self.alert_id: str | None = None  # set while firing
        self.fired_at: float | None = None
        self.bad_since: float | None = None  # pending since (not firing)
        self.good_since: float | None = None  # clearing since (firing)
        self.value: Any = None
        self.seen_at = 0.0
        self.fresh_for = float("inf")

    @property
    def firing(self) -> bool:
        return self.alert_id is not None

    @property
    def armed(self) -> bool:
        """Waiting for time to pass (the periodic tick must look at it)."""
        return self.bad_since is not None if self.alert_id is None else self.good_since is not None

    @property
    def idle(self) -> bool:
        return self.alert_id is None and self.bad_since is None

    def reset(self) -> None:
        """Forget pending and clearing progress (suppression); a firing alert stays firing."""
        self.bad_since = None
        self.good_since = None


def observe(
    rule: Rule, track: Track, value: Any, at: float, since: float, fresh_for: float = float("inf")
) -> Transition | None:
    """Feed one observation: `value` held from `since` until `at` (`since` <= `at`)."""
    track.value = value
    track.seen_at = at
    track.fresh_for = fresh_for
    if track.alert_id is None:
        if rule.breached(value):
            if track.bad_since is None:
                track.bad_since = since
            if at - track.bad_since >= rule.for_seconds - EPSILON:
                return Transition.FIRE
        else:
            track.bad_since = None
    elif rule.cleared(value):
        if track.good_since is None:
            track.good_since = since
        if at - track.good_since >= rule.resolve_for_seconds - EPSILON:
            return Transition.RESOLVE
    else:
        track.good_since = None
    return None


def due(rule: Rule, track: Track, now: float) -> Transition | None:
    """What time alone decides: the last value still holds (fresh) and has held long enough."""
    if now - track.seen_at > track.fresh_for:
        return None
    if track.alert_id is None:
        if track.bad_since is not None and now - track.bad_since >= rule.for_seconds - EPSILON:
            return Transition.FIRE
    elif (
        track.good_since is not None
        and now - track.good_since >= rule.resolve_for_seconds - EPSILON
    ):
        return Transition.RESOLVE
    return None


def fired(track: Track, alert_id: str, at: float) -> None:
    track.alert_id, track.fired_at = alert_id, at
    track.bad_since = track.good_since = None


def resolved(track: Track) -> None:
    track.alert_id = track.fired_at = None
    track.bad_since = track.good_since = None
