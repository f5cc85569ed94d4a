"""A table's order by one column, in plain Python and without a comparison written in Python.

Each row's sort key is kept beside the order, so when only some rows changed, only their keys
are read again: the unchanged rows are still in order and one stable sort merges the changed
ones in (the sort finds the unchanged run already ordered and gallops through it).
"""

from __future__ import annotations

from itertools import chain, pairwise
from math import isnan
from typing import Any, cast

Key = float | str  # floats for numeric columns, lower-case text otherwise
MERGE_SHARE = 4  # merge the changed rows in while at most 1/4 of the rows changed
MISSING = -1.0  # a numeric column's key when there is no number (before every figure)
_NUMBERS = frozenset({float, int})


def sort_keys(values: list[Any], numeric: bool) -> list[Key]:
    """The keys that order `values` as a column shows them (what `Column.sort_key` gives)."""
    if not numeric:
        return ["" if v is None else str(v).lower() for v in values]
    if set(map(type, values)) <= _NUMBERS:  # the usual case: every value a number
        floats = list(map(float, values))
        if not any(map(isnan, floats)):
            return cast("list[Key]", floats)
    # NaN compares false with everything and would break the order: it sorts as missing.
    return [float(v) if type(v) in _NUMBERS and v == v else MISSING for v in values]


def full_order(keys: list[Key], descending: bool) -> list[int]:
    """Positions in `keys` in sorted order (stable: equal keys keep their order)."""
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=descending)


def merged_order(
    keys: list[Key], changed: list[int], fresh: list[Key], descending: bool
) -> tuple[list[int], list[Key]]:
    """The order after the rows at `changed` (ascending positions) got the keys `fresh`, the
    others keeping theirs (`keys`, sorted): (old position of each row in the new order, keys in
    the new order). Among equal keys a changed row goes after the unchanged ones."""
    bounds = [-1, *changed, len(keys)]
    kept = list(chain.from_iterable(range(a + 1, b) for a, b in pairwise(bounds)))
    positions = kept + changed
    both = list(map(keys.__getitem__, kept)) + fresh
    order = full_order(both, descending)
    return list(map(positions.__getitem__, order)), list(map(both.__getitem__, order))


def worth_merging(changed: int, rows: int) -> bool:
    return changed * MERGE_SHARE <= rows
