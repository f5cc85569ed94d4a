"""A rollout's decisions, without I/O: its steps (one per instance of the modules it moves), the
batches they go in, when a switched instance counts as ready, and the sentences that say why
one is not. The runner is master/services/rollouts.py."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from master.services.commands import START_TIMEOUT
from master.services.operation_steps import DEFAULT_READY_TIMEOUT, Step, StepState
from protocol.rest import InstanceOut
from protocol.rest_releases import batch_count
from protocol.states import HealthState, InstanceState

Outcome = tuple[StepState, str | None]


@dataclass(frozen=True)
class Target:
    """A module and the package it moves to."""

    module_id: str
    module_name: str
    level: int
    package_id: str
    version: str
    from_version: str | None  # the module's version before (what a rollback returns to)


@dataclass(frozen=True)
class InstanceRow:
    id: str
    name: str
    node_id: str
    module_id: str
    package_id: str | None
    version: str | None
    running: bool  # its desired state is running: started again after its switch


def plan(targets: Iterable[Target], instances: Iterable[InstanceRow]) -> list[Step]:
    """One step per instance, by level (start_order), then name."""
    by_module = {t.module_id: t for t in targets}
    steps = []
    for inst in instances:
        target = by_module.get(inst.module_id)
        if target is None:
            continue
        steps.append(
            Step(
                instance_id=inst.id,
                name=inst.name,
                node_id=inst.node_id,
                level=target.level,
                module_id=target.module_id,
                from_package=inst.package_id,
                to_package=target.package_id,
                from_version=inst.version,
                to_version=target.version,
                was_running=inst.running,
            )
        )
    steps.sort(key=lambda st: (st.level, st.name))
    return steps


def assign_batches(steps: list[Step], batch_size: int | str, canary: int) -> int:
    """Number the batches (1, 2, ...) level by level: within a level, the first `canary`
    instances of the rollout go alone, then `batch_size` (a count, or a share of the level's
    instances) at a time. Returns how many batches there are."""
    batch = 0
    canary_left = canary
    for level in sorted({st.level for st in steps}):
        todo = [st for st in steps if st.level == level]
        size = batch_count(batch_size, len(todo))
        while todo:
            take = canary_left if canary_left > 0 else size
            canary_left = 0
            batch += 1
            for st in todo[:take]:
                st.batch = batch
            todo = todo[take:]
    return batch


def canary_batch(steps: list[Step], canary: int) -> int | None:
    """The batch after which a canary rollout pauses (None without a canary)."""
    if canary <= 0 or not steps:
        return None
    return min(st.batch or 0 for st in steps)


def ready_allowed(gated: bool, ready_timeout: float | None, check: dict[str, Any] | None) -> float:
    """Seconds a switched instance may take to be ready (healthy, or up at all)."""
    if not gated:
        return START_TIMEOUT
    return ready_timeout or float((check or {}).get("ready_timeout", DEFAULT_READY_TIMEOUT))


def readiness(
    st: Step,
    view: InstanceOut,
    gated: bool,
    pid: int | None,
    restarts: int,
) -> Outcome | None:
    """Where a switched and started instance stands: FAILED (why), DONE (running, and healthy
    when it has a check), or None while on its way. `pid` is the process the switch started
    (a view of any other is older), `restarts` its count then (a restart since is a crash)."""
    state = view.state
    if state == InstanceState.UNKNOWN:
        return StepState.FAILED, f"{st.name}: its node went offline"
    if state == "destroyed":
        return StepState.FAILED, f"{st.name} was destroyed"
    if pid is not None and view.pid not in (None, pid) and state == InstanceState.RUNNING:
        if view.restarts > restarts:
            return StepState.FAILED, f"{st.name} crashed and was restarted ({view.last_error})"
        return None  # an older view of it
    if state in (InstanceState.EXITED, InstanceState.FAILED, InstanceState.STOPPED):
        return StepState.FAILED, f"{st.name} {state} at start: {view.last_error or state}"
    if state != InstanceState.RUNNING:
        return None
    if gated and view.health != HealthState.HEALTHY:
        return None
    return StepState.DONE, None


def not_ready_text(st: Step, view: InstanceOut | None, gated: bool, limit: float) -> str:
    if gated and view is not None and view.state == InstanceState.RUNNING:
        why = f" (last probe: {view.health_detail})" if view.health_detail else ""
        return f"{st.name} did not become healthy within {limit:g} s{why}"
    state = view.state if view is not None else "unknown"
    return f"{st.name} is still {state} after {limit:g} s"


def summary(failure: str, rolled: list[Step], stuck: list[Step]) -> str:
    """The operation's error: what failed, and what the rollback did."""
    parts = [failure]
    if rolled:
        back = sorted({st.from_version or "?" for st in rolled})
        parts.append(f"rolled back {len(rolled)} instance(s) to {', '.join(back)}")
    for st in stuck:
        parts.append(f"could not roll back {st.name}: {st.error}")
    return "; ".join(parts)
