"""The restart policy's schedule: immediate first restart, exponential backoff with jitter,
give up after `limit` failures within the window, reset by a manual start."""

import pytest

from agent.executor.restart import Backoff, RestartPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backoff(policy: RestartPolicy, rand: float = 0.5) -> tuple[Backoff, Clock]:
    clock = Clock()
    return Backoff(policy, clock=clock, rand=lambda: rand), clock


@pytest.mark.parametrize(
    ("mode", "code", "wanted"),
    [
        ("no", 1, False),
        ("on-failure", 0, False),
        ("on-failure", 1, True),
        ("on-failure", -9, True),  # killed by a signal
        ("on-failure", None, True),  # exit code unknown (a re-adopted process)
        ("always", 0, True),
    ],
)
def test_which_exits_are_restarted(mode, code, wanted):
    assert RestartPolicy(mode).wants_restart(code) is wanted


def test_first_restart_is_immediate_then_backoff_doubles_up_to_the_cap():
    b, clock = backoff(RestartPolicy("always", limit=100, window=1e9, base=0.5, cap=4.0))
    delays = []
    for _ in range(7):
        delays.append(b.on_failure())
        clock.now += 1
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # rand 0.5 = no jitter


def test_jitter_stays_within_its_band():
    policy = RestartPolicy("always", limit=100, window=1e9, base=1.0, jitter=0.2)
    low, _ = backoff(policy, rand=0.0)
    high, _ = backoff(policy, rand=0.999999)
    for b in (low, high):
        b.on_failure()  # the immediate one
    assert low.on_failure() == pytest.approx(0.8)
    assert high.on_failure() == pytest.approx(1.2, rel=1e-4)


def test_gives_up_after_limit_failures_within_the_window():
    b, clock = backoff(RestartPolicy("on-failure", limit=3, window=10))
    assert b.on_failure() == 0.0
    clock.now += 1
    assert b.on_failure() is not None
    clock.now += 1
    assert b.on_failure() is None  # the third failure within 10 s


def test_failures_older_than_the_window_are_forgotten():
    b, clock = backoff(RestartPolicy("on-failure", limit=3, window=10))
    b.on_failure()
    clock.now += 1
    b.on_failure()
    clock.now += 30  # ran fine for a while
    assert b.on_failure() == 0.0  # counts as a first failure again
    assert b.recent == 1


def test_reset_starts_over():
    b, _ = backoff(RestartPolicy("on-failure", limit=2, window=10))
    b.on_failure()
    assert b.on_failure() is None
    b.reset()
    assert b.on_failure() == 0.0
