"""Instance and node states, and the groupings the rest of the code reasons with.

Like supervisor's `states.py`: plain enums with no dependencies, so every layer agrees on
the words and a typo fails loudly.
"""

from enum import StrEnum


class InstanceState(StrEnum):
    DEPLOYING = "deploying"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"
    UNKNOWN = "unknown"  # its node is offline: the master does not know
    DESTROYING = "destroying"


class DesiredState(StrEnum):
    """What the master wants an instance to be; compared with `InstanceState` to reconcile."""

    STOPPED = "stopped"
    RUNNING = "running"


class NodeStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class HealthState(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


# A process exists (or is about to) in these states.
ACTIVE_STATES = frozenset({InstanceState.STARTING, InstanceState.RUNNING, InstanceState.STOPPING})
# No process exists in these states; a start is allowed.
STARTABLE_STATES = frozenset({InstanceState.STOPPED, InstanceState.EXITED, InstanceState.FAILED})
# Nothing may be started or stopped while an instance is in one of these.
BUSY_STATES = frozenset({InstanceState.DEPLOYING, InstanceState.DESTROYING})
# The process has ended, by request or not.
DOWN_STATES = frozenset({InstanceState.STOPPED, InstanceState.EXITED, InstanceState.FAILED})
