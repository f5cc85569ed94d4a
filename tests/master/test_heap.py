"""The master's garbage-collector settings, applied once start-up is done."""

import gc
from collections.abc import Iterator

import pytest

from master.heap import settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_start_up_objects_are_frozen_and_later_ones_collected(restored_gc: None) -> None:
    built_at_start_up = {"a": [1, 2, 3]}
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(o is built_at_start_up for o in gc.get_objects())  # out of every collection
    made_after = {"b": [4]}
    assert any(o is made_after for o in gc.get_objects())  # collected as usual
