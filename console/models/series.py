"""Bounded metric series for charts: numbers in numpy ring buffers, never a Python object per sample.

A chart asks `window(seconds)` for the recent part as two float64 arrays; `decimate()` reduces
them to at most two points (min and max) per pixel column, which draws the same picture as
every sample while keeping the redraw cost independent of the window length.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


class Series:
    def __init__(self, capacity: int = 3600) -> None:
        self.capacity = capacity
        self._ts = np.zeros(capacity, dtype=np.float64)
        self._v = np.zeros(capacity, dtype=np.float64)
        self._n = 0  # samples held
        self._head = 0  # next write position
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
        self.version += 1

    def extend(self, ts: Array, values: Array) -> None:
        for t, v in zip(ts.tolist(), values.tolist(), strict=True):
            self.append(t, v)

    @property
    def last_ts(self) -> float:
        return float(self._ts[(self._head - 1) % self.capacity]) if self._n else 0.0

    @property
    def last(self) -> float | None:
        return float(self._v[(self._head - 1) % self.capacity]) if self._n else None

    def arrays(self) -> tuple[Array, Array]:
        """Oldest first (copies, safe to keep)."""
        if self._n < self.capacity:
            return self._ts[: self._n].copy(), self._v[: self._n].copy()
        order = np.r_[self._head : self.capacity, 0 : self._head]
        return self._ts[order], self._v[order]

    def window(self, seconds: float, now: float | None = None) -> tuple[Array, Array]:
        ts, v = self.arrays()
        if not len(ts):
            return ts, v
        end = ts[-1] if now is None else now
        start = int(np.searchsorted(ts, end - seconds, side="left"))
        return ts[start:], v[start:]

    def clear(self) -> None:
        self._n = self._head = 0
        self.version += 1


def decimate(ts: Array, values: Array, buckets: int) -> tuple[Array, Array]:
    """Min and max of each of `buckets` equal slices, in time order: what a pixel column shows."""
    n = len(ts)
    if buckets <= 0 or n <= 2 * buckets:
        return ts, values
    per = n // buckets
    used = per * buckets
    v = values[:used].reshape(buckets, per)
    t = ts[:used].reshape(buckets, per)
    imin = v.argmin(axis=1)
    imax = v.argmax(axis=1)
    rows = np.arange(buckets)
    first = np.minimum(imin, imax)
    second = np.maximum(imin, imax)
    out_t = np.empty(2 * buckets)
    out_v = np.empty(2 * buckets)
    out_t[0::2] = t[rows, first]
    out_t[1::2] = t[rows, second]
    out_v[0::2] = v[rows, first]
    out_v[1::2] = v[rows, second]
    if used < n:  # the tail that did not fill a bucket keeps its last point
        out_t = np.append(out_t, ts[-1])
        out_v = np.append(out_v, values[-1])
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
