"""Restart policy: whether an unexpected exit is restarted, after how long, and when to give up.

The first failure is restarted at once (a crash is noticed as an event, so the new process
exists within milliseconds); repeated failures back off exponentially with jitter, so a service
that dies at start does not spin; `limit` failures within `window` seconds and the agent gives
up (`failed`). A manual start resets the count. Pure logic with an injectable clock and random
source, so the schedule is unit-tested without waiting.
"""

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["no", "on-failure", "always"]


@dataclass(frozen=True)
class RestartPolicy:
    mode: Mode = "no"
    limit: int = 5  # failures within `window` that make the agent give up
    window: float = 60.0
    base: float = 0.5  # delay before the second try; doubles after that
    cap: float = 30.0
    jitter: float = 0.2  # +-20 %

    def wants_restart(self, exit_code: int | None) -> bool:
        """`on-failure` restarts anything but a clean exit 0; an unknown code (a process we
        watched but did not start) counts as a failure."""
        if self.mode == "always":
            return True
        if self.mode == "on-failure":
            return exit_code != 0
        return False

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait before restarting after the `failures`-th recent failure (1-based)."""
        if failures <= 1:
            return 0.0
        raw = min(self.cap, self.base * 2.0 ** (failures - 2))
        return raw * (1 + self.jitter * (2 * rand - 1))


@dataclass
class Backoff:
    """Recent failures of one instance and the decision that follows the next one."""

    policy: RestartPolicy
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    failures: deque[float] = field(default_factory=deque)

    def on_failure(self) -> float | None:
        """Record a failure; return the delay before the restart, or None to give up."""
        now = self.clock()
        self.failures.append(now)
        while self.failures and self.failures[0] < now - self.policy.window:
            self.failures.popleft()
        if len(self.failures) >= self.policy.limit:
            return None
        return self.policy.delay(len(self.failures), self.rand())

    def reset(self) -> None:
        self.failures.clear()

    @property
    def recent(self) -> int:
        return len(self.failures)
