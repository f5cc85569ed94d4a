"""The states of a process the agent manages, and the changes allowed between them, as data.

The agent's own machine: `protocol.states.InstanceState` is the wire's vocabulary, and BACKOFF
(a restart waiting out its delay) goes on the wire as `exited`, so the master needs no new word.
"""

from collections.abc import Mapping
from enum import StrEnum

from protocol.states import InstanceState


class ProcessState(StrEnum):
    # No process: it ended, or never was.
    STOPPED = "stopped"
    EXITED = "exited"
    BACKOFF = "backoff"  # ended unexpectedly; an automatic restart is scheduled
    FAILED = "failed"
    # A process exists, or is about to.
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    # The instance's files are being made or removed: nothing starts meanwhile.
    DEPLOYING = "deploying"
    DESTROYING = "destroying"


S = ProcessState

# Old state -> the states it may change to. Staying in a state is always allowed (only the
# fields that come with it change). "At load" is an agent start finding its last table.
TRANSITIONS: Mapping[ProcessState, frozenset[ProcessState]] = {
    S.DEPLOYING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset(
        {
            S.STARTING,
            S.FAILED,  # its account cannot be used
            S.RUNNING,  # at load: started just before the last agent died
            S.DESTROYING,
        }
    ),
    S.STARTING: frozenset(
        {
            S.RUNNING,
            S.FAILED,  # the spawn failed, or the started process was not found
            S.EXITED,  # at load: it ended while no agent ran
        }
    ),
    S.RUNNING: frozenset(
        {
            S.STOPPING,
            S.DESTROYING,
            S.EXITED,  # ended on its own, and the restart policy lets it be
            S.BACKOFF,  # ended on its own, and a restart is scheduled
            S.FAILED,  # ended on its own once too often: the restart policy gave up
            S.STOPPED,  # a stop found it gone before its exit event came
            S.STARTING,  # a start found it gone before its exit event came
        }
    ),
    S.STOPPING: frozenset(
        {
            S.STOPPED,
            S.RUNNING,  # at load: the last agent died before the process ended
        }
    ),
    S.EXITED: frozenset(
        {
            S.STARTING,
            S.FAILED,  # a start refused; or at load, the restart policy gave up
            S.STOPPED,  # a stop acknowledges the exit
            S.DESTROYING,
            S.RUNNING,  # at load: started just before the last agent died
            S.BACKOFF,  # at load: it ended while no agent ran, and is restarted
        }
    ),
    S.BACKOFF: frozenset(
        {
            S.STARTING,  # the restart
            S.FAILED,  # the restart could not even begin (its account)
            S.EXITED,  # a stop, destroy or manual start cancelled the restart
            S.RUNNING,  # at load: the restart's process outlived the last agent
        }
    ),
    S.FAILED: frozenset(
        {
            S.STARTING,
            S.STOPPED,
            S.DESTROYING,
            S.RUNNING,  # at load: started just before the last agent died
            S.BACKOFF,  # an automatic restart that failed is tried again later
        }
    ),
    S.DESTROYING: frozenset({S.STOPPED}),  # at load: the master sends the destroy again
}

# A process exists (or is about to) in these states.
ACTIVE = frozenset({S.STARTING, S.RUNNING, S.STOPPING})
# Nothing may be started while an instance is in one of these.
BUSY = frozenset({S.DEPLOYING, S.DESTROYING})

# What an illegal change logs (tests look for it in an agent's log).
ILLEGAL = "illegal state change"
# Raise on an illegal change instead of logging it and going on (tests turn it on).
STRICT = False


class IllegalTransition(RuntimeError):
    """A change the table does not allow: a bug in the agent."""


def allowed(old: ProcessState, new: ProcessState) -> bool:
    return new == old or new in TRANSITIONS[old]


def on_wire(state: ProcessState) -> InstanceState:
    """The word the master hears: BACKOFF is `exited` (with an error saying a restart comes)."""
    return InstanceState.EXITED if state == S.BACKOFF else InstanceState(state.value)
