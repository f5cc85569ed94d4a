"""A batch operation's decisions, without I/O: its steps from the system's rows, whether a
level may begin, what each step changes, how long it may take and when it is done."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.services.commands import COMMAND_SLACK, START_TIMEOUT
from master.services.instance_rows import Row
from master.services.operation_steps import DEFAULT_READY_TIMEOUT, Step, StepState
from protocol.rest import InstanceOut
from protocol.states import (
    ACTIVE_STATES,
    BUSY_STATES,
    DOWN_STATES,
    DesiredState,
    HealthState,
    InstanceState,
)

Outcome = tuple[StepState, str | None]  # the step's new state and, when it failed, why


def plan(s: Session, system_id: str) -> list[Step]:
    """One step per instance of the system, by level (a module's `start_order`; an adopted
    instance's own), then name. Columns, not ORM entities: a system may span a fleet."""
    inst_t, mod_t, pkg_t = models.Instance, models.Module, models.Package
    instances = s.execute(
        select(
            inst_t.id,
            inst_t.name,
            inst_t.node_id,
            inst_t.module_id,
            inst_t.package_id,
            inst_t.adopted,
            inst_t.adoption,
        ).where(inst_t.system_id == system_id)
    ).all()
    start_order: dict[str, int] = {
        row.id: row.start_order
        for row in s.execute(
            select(mod_t.id, mod_t.start_order).where(mod_t.system_id == system_id)
        )
    }
    package_ids = {i.package_id for i in instances if i.package_id}
    manifests: dict[str, dict[str, Any]] = {
        row.id: row.manifest
        for row in s.execute(select(pkg_t.id, pkg_t.manifest).where(pkg_t.id.in_(package_ids)))
    }
    steps = []
    for inst in instances:
        order = start_order.get(inst.module_id or "")
        adoption = inst.adoption or {}
        source = manifests.get(inst.package_id or "", {}) if not inst.adopted else adoption
        health = source.get("health") or None
        level = order if order is not None else int(adoption.get("start_order", 0))
        steps.append(
            Step(
                instance_id=inst.id,
                name=inst.name,
                node_id=inst.node_id,
                level=level,
                gated=health is not None,
                ready_timeout=float((health or {}).get("ready_timeout", DEFAULT_READY_TIMEOUT)),
                stop_timeout=float(source.get("stop_timeout", 10.0)),
            )
        )
    steps.sort(key=lambda st: (st.level, st.name))
    return steps


def refusal(kind: str, st: Step, row: Row | None, online: bool) -> str | None:
    """Why this step's instance cannot move now (the whole level is then refused), or None."""
    if row is None:
        return f"{st.name} was destroyed" if kind == "start" else None
    if row["state"] in BUSY_STATES:
        return f"{row['name']} is {row['state']}"
    if not online:
        return f"{row['name']}: node {row['node_id']} is offline"
    if (
        kind == "start"
        and row["state"] not in ACTIVE_STATES
        and row["adopted"]
        and not (row["adoption"] or {}).get("start_command")
    ):
        return f"{row['name']} is not running and was adopted without a start command"
    return None


def begin_step(starting: bool, state: str) -> tuple[Row, StepState, bool]:
    """What a level's start changes on an instance in `state`: (columns, step state, whether
    the agent gets a command)."""
    if starting:
        change: Row = {"desired_state": DesiredState.RUNNING}
        if state in (InstanceState.RUNNING, InstanceState.STARTING):
            return change, StepState.STARTING, False  # already up or on its way: no second process
        change.update(state=InstanceState.STARTING, last_error=None)
        return change, StepState.STARTING, True
    change = {"desired_state": DesiredState.STOPPED}
    if state in ACTIVE_STATES:
        change["state"] = InstanceState.STOPPING
    # Exited and failed ones get the stop too: it cancels a pending restart.
    return change, StepState.STOPPING, state != InstanceState.STOPPED


def allowed(kind: str, st: Step, ready_timeout: float | None) -> float:
    """Seconds a step may take: to stop, to run, or to run and become healthy."""
    if kind == "stop":
        return st.stop_timeout + COMMAND_SLACK
    if st.gated:
        return ready_timeout or st.ready_timeout
    return START_TIMEOUT


def timeout_text(kind: str, st: Step, view: InstanceOut | None, limit: float) -> str:
    if kind == "stop":
        return f"{st.name} did not stop within {limit:g} s"
    if st.gated and view is not None and view.state == InstanceState.RUNNING:
        why = f" (last probe: {view.health_detail})" if view.health_detail else ""
        return f"{st.name} did not become healthy within {limit:g} s{why}"
    state = view.state if view is not None else "unknown"
    return f"{st.name} is still {state} after {START_TIMEOUT:g} s"


def outcome(kind: str, st: Step, view: InstanceOut) -> Outcome | None:
    """Where the instance's newest view takes its step; None while it is on its way."""
    state = view.state
    offline = (StepState.FAILED, f"{st.name}: its node went offline")
    if kind == "stop":
        if state == "destroyed" or state in DOWN_STATES:
            return StepState.DONE, None
        return offline if state == InstanceState.UNKNOWN else None
    if state == "destroyed":
        return StepState.FAILED, f"{st.name} was destroyed"
    if state == InstanceState.RUNNING:
        if not st.gated or view.health == HealthState.HEALTHY:
            return StepState.DONE, None
        return StepState.WAITING_HEALTH, None
    if state in (InstanceState.EXITED, InstanceState.FAILED):
        return StepState.FAILED, f"{st.name} {state}: {view.last_error or state}"
    return offline if state == InstanceState.UNKNOWN else None
