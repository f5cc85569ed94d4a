"""The master's log budget: a peer that misbehaves at a high rate gets a few lines a minute."""

from master.services.throttle import LogBudget


def test_a_few_lines_per_window_then_a_count_of_what_was_held_back():
    budget = LogBudget(lines=3, window=60.0)
    answers = [budget.allow("node-a", now=100.0 + i * 0.001) for i in range(1000)]
    assert answers[:3] == [0, 0, 0]
    assert answers[3:] == [None] * 997
    # The next window lets lines through again, the first telling how many were held back.
    assert budget.allow("node-a", now=161.0) == 997
    assert budget.allow("node-a", now=161.5) == 0
    # Keys are separate: another node is not silenced by the first one's noise.
    assert budget.allow("node-b", now=100.5) == 0


def test_memory_is_bounded():
    budget = LogBudget(lines=1, window=60.0, max_keys=100)
    for i in range(10_000):
        budget.allow(f"k{i}", now=float(i))
    assert len(budget._spent) == 100
