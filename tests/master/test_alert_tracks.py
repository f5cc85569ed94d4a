"""The alert engine's tracks know which targets have one, whatever writes them."""

from master.services.alerting.evaluator import Track
from master.services.alerting.tracks import Tracks


def test_targets_follow_every_write():
    tracks = Tracks()
    tracks[("r1", "a")] = Track()
    tracks[("r2", "a")] = Track()
    tracks[("r1", "a")] = Track()  # replaced: still one track of r1's
    tracks.setdefault(("r1", "b"), Track())
    tracks.update({("r3", "c"): Track()})
    assert tracks.targets == {"a": 2, "b": 1, "c": 1}
    del tracks[("r1", "a")]
    assert tracks.pop(("r9", "a"), None) is None
    tracks.pop(("r2", "a"))
    tracks.popitem()
    assert tracks.targets == {"b": 1} and list(tracks) == [("r1", "b")]
    tracks.clear()
    assert tracks.targets == {} and tracks == {}
