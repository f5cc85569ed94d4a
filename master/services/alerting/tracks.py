"""The evaluator's tracks by (rule id, target id), knowing which targets have one.

The ingest's hot path asks whether any row of a message has a track (one C call over the
message's ids) before it looks row by row: most messages have none and breach nothing.
"""

from typing import Any

from master.services.alerting.evaluator import Track

Key = tuple[str, str]  # (rule id, target id)


class Tracks(dict[Key, Track]):
    """A dict whose writes keep `targets` (target id -> its number of tracks) in step."""

    __slots__ = ("targets",)

    def __init__(self) -> None:
        super().__init__()
        self.targets: dict[str, int] = {}

    def __setitem__(self, key: Key, track: Track) -> None:
        if key not in self:
            self.targets[key[1]] = self.targets.get(key[1], 0) + 1
        super().__setitem__(key, track)

    def __delitem__(self, key: Key) -> None:
        super().__delitem__(key)
        self._gone(key[1])

    def pop(self, key: Key, *default: Any) -> Any:
        if key in self:
            self._gone(key[1])
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self.targets.clear()

    def setdefault(self, key: Key, default: Track) -> Track:
        if key not in self:
            self[key] = default
        return self[key]

    def popitem(self) -> tuple[Key, Track]:
        key, track = super().popitem()
        self._gone(key[1])
        return key, track

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, track in dict(*args, **kwargs).items():
            self[key] = track

    def _gone(self, target: str) -> None:
        left = self.targets[target] - 1
        if left:
            self.targets[target] = left
        else:
            del self.targets[target]
