"""Bounded metric series for charts: numbers in `array('d')` ring buffers, never a Python object per sample.

A chart asks `window(seconds)` for the recent part as two float arrays; `decimate()` reduces
them to at most two points (min and max) per pixel column, which draws the same picture as
every sample while keeping the redraw cost independent of the window length.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from typing import TypeAlias

Array: TypeAlias = "array[float]"  # array("d"): contiguous float64


class Series:
    def __init__(self, capacity: int = 3600) -> None:
        self.capacity = capacity
        self._ts = array("d", bytes(8 * capacity))
        self._v = array("d", bytes(8 * capacity))
        self._n = 0  # samples held
        self._head = 0  # next write position
        self.count = 0  # samples ever appended: the newest held is number count - 1
        self.version = 0  # bumps on every change: charts redraw only what changed

    def __len__(self) -> int:
        return self._n

    def append(self, ts: float, value: float) -> None:
        if self._n and ts < self.last_ts:
            return  # late or duplicate sample: series stay ordered
        self._ts[self._head] = ts
        self._v[self._head] = value
        self._head = (self._head + 1) % self.capacity
        self._n = min(self._n + 1, self.capacity)
        self.count += 1
        self.version += 1

    def extend(self, ts: Iterable[float], values: Iterable[float]) -> None:
        for t, v in zip(ts, values, strict=True):
            self.append(t, v)

    @property
    def last_ts(self) -> float:
        return self._ts[(self._head - 1) % self.capacity] if self._n else 0.0

    @property
    def last(self) -> float | None:
        return self._v[(self._head - 1) % self.capacity] if self._n else None

    def arrays(self) -> tuple[Array, Array]:
        """Oldest first (copies, safe to keep)."""
        if self._n < self.capacity:
            return self._ts[: self._n], self._v[: self._n]
        h = self._head
        return self._ts[h:] + self._ts[:h], self._v[h:] + self._v[:h]

    def window(self, seconds: float, now: float | None = None) -> tuple[Array, Array]:
        ts, v = self.arrays()
        if not len(ts):
            return ts, v
        end = ts[-1] if now is None else now
        start = bisect_left(ts, end - seconds)
        return ts[start:], v[start:]

    def since(self, number: int) -> tuple[Array, Array] | None:
        """The samples from number `number` on (see `count`), or None if some are gone."""
        ts, v = self.arrays()
        skip = number - (self.count - self._n)
        if skip < 0:
            return None
        return ts[skip:], v[skip:]

    def clear(self) -> None:
        self._n = self._head = self.count = 0
        self.version += 1


def bucket_points(ts: Array, values: Array, per: int) -> tuple[Array, Array]:
    """Min and max of each slice of `per` samples, in time order (the samples as they are for
    `per` 1); a trailing part slice is left out."""
    if per <= 1:
        return ts, values
    out_t = array("d")
    out_v = array("d")
    add_t, add_v = out_t.append, out_v.append
    for start in range(0, len(ts) - per + 1, per):
        chunk = values[start : start + per]
        lo, hi = min(chunk), max(chunk)
        i, j = chunk.index(lo), chunk.index(hi)
        if i > j:
            i, j, lo, hi = j, i, hi, lo
        add_t(ts[start + i])
        add_t(ts[start + j])
        add_v(lo)
        add_v(hi)
    return out_t, out_v


def decimate(ts: Array, values: Array, buckets: int) -> tuple[Array, Array]:
    """Min and max of each of `buckets` equal slices, in time order: what a pixel column shows."""
    n = len(ts)
    if buckets <= 0 or n <= 2 * buckets:
        return ts, values
    per = n // buckets
    used = per * buckets
    out_t, out_v = bucket_points(ts[:used], values[:used], per)
    if used < n:  # the tail that did not fill a bucket keeps its last point
        out_t.append(ts[-1])
        out_v.append(values[-1])
    return out_t, out_v


class SeriesStore:
    """All series the console keeps, keyed by (target id, field); bounded in count and length."""

    def __init__(self, capacity: int = 3600, max_series: int = 2000) -> None:
        self.capacity = capacity
        self.max_series = max_series
        self._series: dict[tuple[str, str], Series] = {}

    def get(self, target: str, field: str) -> Series:
        key = (target, field)
        s = self._series.get(key)
        if s is None:
            if len(self._series) >= self.max_series:
                self._series.pop(next(iter(self._series)))  # the oldest created goes
            s = self._series[key] = Series(self.capacity)
        return s

    def has(self, target: str, field: str) -> bool:
        return (target, field) in self._series

    def add(self, target: str, ts: float, fields: dict[str, float]) -> None:
        for field, value in fields.items():
            self.get(target, field).append(ts, float(value))

    def drop(self, target: str) -> None:
        for key in [k for k in self._series if k[0] == target]:
            del self._series[key]

    def __len__(self) -> int:
        return len(self._series)
