"""The alert state machine fed with values: debounce, hysteresis, no storms, no stale firing."""

import pytest

from master.db import models
from master.services.alerting import evaluator, rules
from master.services.alerting.evaluator import Track, Transition
from protocol.errors import GdosError


def rule(**kw) -> rules.Rule:
    body = {
        "name": "r",
        "metric": "cpu_percent",
        "op": ">",
        "threshold": 50,
        "for_seconds": 3.0,
        **kw,
    }
    row = models.AlertRule(id="r1", **rules.normalize(body))
    return rules.from_row(row)


def run(r: rules.Rule, values: list, start: float = 1000.0, step: float = 1.0) -> list:
    """Feed one sample a second (each covering the second before it); returns the transitions
    as (time, kind), applying them the way the engine does."""
    track = Track()
    out = []
    for i, value in enumerate(values):
        at = start + (i + 1) * step
        kind = evaluator.observe(r, track, value, at, at - step, fresh_for=3.5)
        if kind is Transition.FIRE:
            evaluator.fired(track, f"a{i}", at)
        elif kind is Transition.RESOLVE:
            evaluator.resolved(track)
        if kind:
            out.append((at - start, kind))
    return out


def test_fires_after_for_seconds_of_bad_samples_counting_the_first_window():
    # Three samples above 50 cover three seconds (each sample describes the second before it).
    assert run(rule(), [10, 90, 90, 90]) == [(4.0, Transition.FIRE)]
    assert run(rule(), [10, 90, 90]) == []


def test_a_dip_resets_the_debounce():
    assert run(rule(), [90, 90, 40, 90, 90, 40, 90, 90]) == []


def test_oscillating_around_the_threshold_produces_no_storm():
    # Two minutes of a value flipping across the threshold every second.
    flipping = [49.0 if i % 2 else 51.0 for i in range(120)]
    assert run(rule(), flipping) == []
    # Immediate rule (for 0 s): it fires once and then holds, because the value never stays
    # clearly good (<= 47.5, the 5 % hysteresis) for the 5 s resolve period.
    wobbling = [55.0, 44.0, 52.0, 46.0, 51.0, 40.0, 56.0, 45.0] * 15
    events = run(rule(for_seconds=0), wobbling)
    assert [kind for _, kind in events] == [Transition.FIRE]


def test_hysteresis_needs_a_clear_margin_and_time_to_resolve():
    r = rule(for_seconds=0, resolve_for_seconds=3)
    # 49 is below the threshold but inside the 2.5 margin: it never counts toward resolving.
    assert [k for _, k in run(r, [90] + [49.0] * 20)] == [Transition.FIRE]
    # Clearly good for 3 s resolves; a bad sample in between restarts the count.
    events = run(r, [90, 10, 10, 90, 10, 10, 10])
    assert [k for _, k in events] == [Transition.FIRE, Transition.RESOLVE]
    assert events[1][0] == 7.0


def test_fire_resolve_fire_needs_the_full_debounce_again():
    r = rule(for_seconds=2, resolve_for_seconds=2)
    events = run(r, [90, 90, 10, 10, 90, 10, 90, 90])
    assert [k for _, k in events] == [Transition.FIRE, Transition.RESOLVE, Transition.FIRE]


def test_the_tick_fires_on_time_while_the_last_value_is_fresh():
    r = rule(for_seconds=3)
    track = Track()
    assert evaluator.observe(r, track, 90, at=101.0, since=100.0, fresh_for=3.5) is None
    assert evaluator.due(r, track, 102.9) is None
    assert evaluator.due(r, track, 103.0) is Transition.FIRE  # no new sample needed
    stale = Track()
    evaluator.observe(r, stale, 90, at=101.0, since=100.0, fresh_for=1.5)
    assert evaluator.due(r, stale, 103.0) is None  # samples stopped: no decision on old data


def test_state_rules_compare_words_and_resolve_after_the_resolve_period():
    r = rule(metric="state", op="==", threshold="exited", for_seconds=0)
    track = Track()
    assert evaluator.observe(r, track, "running", 1.0, 1.0) is None
    assert evaluator.observe(r, track, "exited", 2.0, 2.0) is Transition.FIRE
    evaluator.fired(track, "a", 2.0)
    assert evaluator.observe(r, track, "running", 3.0, 3.0) is None
    assert evaluator.due(r, track, 7.9) is None
    assert evaluator.due(r, track, 8.0) is Transition.RESOLVE  # default: max(for, 5 s)


def test_less_than_rules_use_the_margin_above():
    r = rule(op="<", threshold=100, for_seconds=0)
    assert r.breached(99) and not r.breached(100)
    assert not r.cleared(104) and r.cleared(105)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metric": "cpu_percent", "op": ">", "threshold": "lots"}, "threshold"),
        ({"metric": "cpu_percent", "op": ">", "threshold": -1}, "threshold"),
        ({"metric": "rss_bytes", "op": ">", "threshold": float("inf")}, "threshold"),
        ({"metric": "state", "op": ">", "threshold": "exited"}, "op"),
        ({"metric": "state", "op": "==", "threshold": "sleepy"}, "threshold"),
        ({"metric": "state", "op": "==", "threshold": 3}, "threshold"),
        ({"metric": "node_status", "op": "==", "threshold": "running"}, "threshold"),
        (
            {
                "metric": "cpu_percent",
                "op": ">",
                "threshold": 1,
                "scope": {"node_id": "a", "system_id": "b"},
            },
            "scope",
        ),
    ],
)
def test_inconsistent_rules_are_refused_with_the_field_named(body, field):
    with pytest.raises(GdosError) as err:
        rules.normalize({"name": "x", **body})
    assert err.value.details["field"] == field
    assert err.value.message.startswith(f"{field}: ")
