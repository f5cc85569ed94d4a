"""Wall-clock marks of this master's start, for the restart benchmark (`/debug/start-up`).

Each phase is marked once, when first reached; the hello marks follow the reconnecting fleet
(the first greeting taken, the latest batch applied, how many nodes were greeted).
"""

import time

MARKS: dict[str, float] = {}
COUNTS: dict[str, int] = {}


def mark(phase: str) -> None:
    """Note when `phase` was first reached."""
    MARKS.setdefault(phase, time.time())


def mark_latest(phase: str, count: int = 1) -> None:
    """Note the latest time `phase` happened and add `count` to its tally."""
    MARKS[phase] = time.time()
    COUNTS[phase] = COUNTS.get(phase, 0) + count
