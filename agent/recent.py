"""Command ids the agent has seen lately, so that each runs at most once: a command sent again
(through another master after a failover) is answered with the result it gave, or, while it
still runs, by that result when it comes."""

from collections import OrderedDict

from protocol.messages import Result

KEEP = 256  # ids remembered (a failover resends within seconds); older ones are forgotten
RUNNING = None


class RecentCommands:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, Result | None] = OrderedDict()

    def begin(self, cmd_id: str) -> tuple[bool, Result | None]:
        """(True, None) for a new id, now running; (False, its result or None while it runs)
        for one seen before."""
        if cmd_id in self._seen:
            return False, self._seen[cmd_id]
        self._seen[cmd_id] = RUNNING
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return True, None

    def done(self, cmd_id: str, result: Result) -> None:
        if cmd_id in self._seen:
            self._seen[cmd_id] = result
