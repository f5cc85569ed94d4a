"""The `operation` resource in memory: its steps (one per instance), their states, and the
shapes it is saved and published in. The runners that move them are master/services/operations.py
(batch start and stop) and master/services/rollouts.py (rollouts and rollbacks)."""

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from master.db import models
from protocol.rest import OperationOut, StepOut, iso

DEFAULT_READY_TIMEOUT = 60.0


class OpState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    WAITING_HEALTH = "waiting_health"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # never reached: a lower level failed
    CANCELLED = "cancelled"  # in progress when the operation ended
    # Rollouts and rollbacks.
    PREPARING = "preparing"  # its node fetches and unpacks the new release beside the running one
    PREPARED = "prepared"  # waiting for its batch
    SWITCHING = "switching"  # stop, switch, start
    ROLLING_BACK = "rolling_back"  # back to the release it ran before the rollout
    ROLLED_BACK = "rolled_back"


FINAL_STEPS = frozenset(
    {
        StepState.DONE,
        StepState.FAILED,
        StepState.SKIPPED,
        StepState.CANCELLED,
        StepState.ROLLED_BACK,
    }
)


@dataclass
class Step:
    instance_id: str
    name: str
    node_id: str
    level: int
    gated: bool = False  # has a health check: done only when healthy
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    stop_timeout: float = 10.0
    state: StepState = StepState.PENDING
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # Rollouts and rollbacks: the releases it goes from and to, its batch, whether it ran
    # before (then it is started after its switch), and whether it was switched (touched: a
    # rollback switches it back).
    module_id: str | None = None
    from_package: str | None = None
    to_package: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    batch: int | None = None
    was_running: bool = False
    touched: bool = False
    _view: tuple[tuple[Any, ...], dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STEPS

    def record(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "node_id": self.node_id,
            "level": self.level,
            "gated": self.gated,
            "ready_timeout": self.ready_timeout,
            "stop_timeout": self.stop_timeout,
            "state": str(self.state),
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **({f: getattr(self, f) for f in _ROLLOUT_FIELDS} if self.to_package else {}),
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "Step":
        return cls(
            instance_id=r["instance_id"],
            name=r.get("name", ""),
            node_id=r.get("node_id", ""),
            level=int(r.get("level", 0)),
            gated=bool(r.get("gated", False)),
            ready_timeout=float(r.get("ready_timeout", DEFAULT_READY_TIMEOUT)),
            stop_timeout=float(r.get("stop_timeout", 10.0)),
            state=StepState(r.get("state", "pending")),
            error=r.get("error"),
            started_at=r.get("started_at"),
            finished_at=r.get("finished_at"),
            **{f: r[f] for f in _ROLLOUT_FIELDS if f in r},
        )

    def view(self) -> dict[str, Any]:
        """StepOut as a plain dict, rebuilt only when the step changed (an operation of a
        hundred steps is published several times a second while it runs)."""
        key = (self.state, self.error, self.started_at, self.finished_at, self.batch)
        if self._view is None or self._view[0] != key:
            self._view = (key, self._build_view())
        return self._view[1]

    def _build_view(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "node_id": self.node_id,
            "level": self.level,
            "state": str(self.state),
            "error": self.error,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "from_version": self.from_version,
            "to_version": self.to_version,
            "batch": self.batch,
        }

    def out(self) -> StepOut:
        return StepOut(**self.view())


_ROLLOUT_FIELDS = (
    "module_id",
    "from_package",
    "to_package",
    "from_version",
    "to_version",
    "batch",
    "was_running",
    "touched",
)


@dataclass
class Op:
    id: str
    kind: str  # start | stop | rollout | rollback
    system_id: str
    actor: str
    created_at: float
    steps: list[Step]
    ready_timeout: float | None = None
    state: OpState = OpState.RUNNING
    error: str | None = None
    level: int | None = None
    resumed: int = 0
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    touched: set[str] = field(default_factory=set)  # instances changed since the last look
    # Rollouts and rollbacks: the module (None for a system's), a canary's pause, and the
    # settings and progress (protocol.rest_releases.RolloutOut as a dict).
    module_id: str | None = None
    paused: bool = False
    rollout: dict[str, Any] | None = None
    master_id: str | None = None  # the master driving it (several masters)

    def view(self) -> dict[str, Any]:
        """OperationOut as a plain dict: what the event stream carries."""
        return {
            "id": self.id,
            "kind": self.kind,
            "system_id": self.system_id,
            "state": str(self.state),
            "error": self.error,
            "actor": self.actor,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
            "level": self.level,
            "resumed": self.resumed,
            "steps": [st.view() for st in self.steps],
            "module_id": self.module_id,
            "paused": self.paused,
            "rollout": self.rollout,
            "master_id": self.master_id,
        }

    def out(self) -> OperationOut:
        return OperationOut.model_validate(self.view())


def operation_out(row: models.Operation) -> OperationOut:
    return OperationOut(
        id=row.id,
        kind=row.kind,
        system_id=row.system_id,
        state=row.state,
        error=row.error,
        actor=row.actor,
        created_at=iso(row.created_at),
        finished_at=iso(row.finished_at),
        level=row.level,
        resumed=row.resumed,
        steps=[Step.from_record(r).out() for r in row.steps or []],
        module_id=row.module_id,
        paused=row.paused,
        rollout=row.rollout,
        master_id=row.master_id,
    )
