"""A table's order by a live column, worked out on the event stream's thread.

Re-sorting 10,000 rows by a live figure means reading 10,000 fresh samples, sorting and building
the new row, key and index lists: too much for a GUI tick. The model publishes what to sort (an
`OrderRequest`: its rows and keys, which it never changes in place, the samples, the column);
the stream thread, once a burst of samples is over, computes the new layout (`ReadyOrder`); the
GUI thread takes it if it still fits (same request, no sample written since) and swaps it in,
else sorts itself as before. Both sides read the samples through `live_sort_keys`, so the
order is the same whichever thread computed it. Samples the GUI thread itself clears (`edit`)
do not spoil a computed order: the model knows which rows those are and merges them in at the
next re-sort. What the old order held (its 10,000-entry lists and key index) the GUI thread hands
back (`retire`): the stream thread frees it, which is most of a swap's cost otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count, repeat
from operator import itemgetter
from typing import Any

from console.models.row_order import Key, full_order, sort_keys

Row = dict[str, Any]
_changes = count(1)  # one number per change of the samples, from any thread (next() is atomic)


def live_sort_keys(samples: Mapping[str, Row], keys: list[str], field: str) -> list[Key]:
    """The sort keys of a numeric live column for these rows (no sample: no figure)."""
    try:
        values = list(map(itemgetter(field), map(samples.get, keys, repeat({field: None}))))
    except KeyError:  # a sample without the field
        values = [(samples.get(k) or {}).get(field) for k in keys]
    return sort_keys(values, numeric=True)


@dataclass(frozen=True, eq=False)
class OrderRequest:
    """What a model wants sorted. `rows` and `keys` are never changed in place once published."""

    rows: list[Row]
    keys: list[str]
    samples: Mapping[str, Row]
    field: str
    descending: bool


@dataclass(frozen=True, eq=False)
class ReadyOrder:
    """The request's rows in their new order, as of the samples' change `changes` and the GUI
    thread's edit `edits`."""

    request: OrderRequest
    changes: int
    edits: int
    rows: list[Row]
    keys: list[str]
    index: dict[str, int]
    sort_keys: list[Key]
    moved: bool  # False: the order was already right


class LiveOrder:
    """The hand-over of an order between the GUI thread (requests, takes) and the stream thread
    (computes). Their writer calls `touch()` after every change of the samples; the GUI thread
    calls `edit()` after changing them itself."""

    def __init__(self) -> None:
        self.changes = 0  # the samples' latest write (a new number each time)
        self.edits = 0  # the GUI thread's latest edit of the samples
        self.wake: Callable[[], None] = _nothing  # asks the stream thread to compute soon
        self._request: OrderRequest | None = None
        self._ready: ReadyOrder | None = None
        self._lock = threading.Lock()  # one computation at a time
        self.computed = 0  # orders computed, for tests and the benchmark
        self._retired: list[object] = []  # the GUI thread's old order, freed on the stream thread

    @property
    def attended(self) -> bool:
        """A stream thread computes orders (woken by `touch` and `request`)."""
        return self.wake is not _nothing

    def attend(self, wake: Callable[[], None] | None) -> None:
        """The stream thread's `wake` from now on (None: no thread computes any more)."""
        self.wake = wake or _nothing
        if wake is None:
            self.free_retired()

    def touch(self) -> None:
        """The samples changed (their writer calls this after the change)."""
        self.changes = next(_changes)
        self.wake()

    def edit(self) -> None:
        """GUI thread: it changed the samples itself (and notes which rows, see `take`)."""
        self.edits = next(_changes)
        self.wake()

    def request(self, request: OrderRequest | None, ready: ReadyOrder | None = None) -> None:
        """GUI thread: sort this from now on (None: nothing). With `ready` (the order just
        applied, whose rows and keys `request` holds), its rows are already in order: nothing to
        compute until the samples change."""
        self._request = request
        if request is None:
            return
        if ready is not None:
            self._ready = ReadyOrder(
                request, ready.changes, ready.edits, [], [], {}, ready.sort_keys, moved=False
            )
        elif self._ready is None or self._ready.request is not request:
            self.wake()

    def retire(self, old: object) -> None:
        """GUI thread: what a swapped-out order held, for the stream thread to free (only while
        one attends: else the caller frees it)."""
        self._retired.append(old)
        self.wake()

    @property
    def retired(self) -> int:
        return len(self._retired)

    def free_retired(self) -> None:
        """Stream thread: free what the GUI thread retired (each pop is atomic)."""
        while self._retired:
            self._retired.pop()

    def take(self, request: OrderRequest) -> ReadyOrder | None:
        """GUI thread: the order computed for `request` and the samples as the stream wrote
        them (if its `edits` is not the latest, rows the GUI thread edited since may be out of
        place)."""
        ready = self._ready
        if ready is None or ready.request is not request or ready.changes != self.changes:
            return None
        return ready

    def compute(self) -> bool:
        """Stream thread: bring the order up to date with the samples; False if nothing to do."""
        self.free_retired()
        with self._lock:
            request, changes, edits = self._request, self.changes, self.edits
            ready = self._ready
            if request is None or (
                ready is not None
                and ready.request is request
                and ready.changes == changes
                and ready.edits == edits
            ):
                return False
            keys = request.keys
            fresh = live_sort_keys(request.samples, keys, request.field)
            order = full_order(fresh, request.descending)
            moved = bool(order) and (order[0] != 0 or order != list(range(len(order))))
            if moved:
                new_keys = list(map(keys.__getitem__, order))
                self._ready = ReadyOrder(
                    request,
                    changes,
                    edits,
                    list(map(request.rows.__getitem__, order)),
                    new_keys,
                    dict(zip(new_keys, range(len(new_keys)), strict=True)),
                    list(map(fresh.__getitem__, order)),
                    moved=True,
                )
            else:
                self._ready = ReadyOrder(request, changes, edits, [], [], {}, fresh, moved=False)
            self.computed += 1
            return True


def _nothing() -> None:
    pass
