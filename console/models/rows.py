"""The rows the console's services, models and pages pass each other, typed.

A row is the API's JSON for one resource (protocol/rest*.py, protocol/monitoring.py), merged
with what events add and with the fields the console adds itself (names instead of ids). Rows
are plain dicts at run time, so the tables' hot paths pay nothing for the types. Every key but
the row's id may be missing: an event carries only what changed. Fields are in alphabetical
order, the console's own after the API's.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict, TypeVar, cast

from pydantic import BaseModel

R = TypeVar("R")


class LoadRow(TypedDict, total=False):
    cpu_percent: float
    disk_percent: float
    load1: float
    mem_percent: float


class NodeRow(TypedDict, total=False):
    agent_version: str
    arch: str
    cpu_count: int
    deleted: bool  # an event: the node is gone
    disk_total: int
    enrolled_at: str | None
    hostname: str
    id: Required[str]
    ip: str
    labels: dict[str, str]
    last_seen: str | None
    load: LoadRow
    mac: str
    master_id: str | None  # the master holding the node's connection (several masters)
    mem_total: int
    os: str
    status: str
    unmanaged_instances: list[str]


class InstanceSettingsRow(TypedDict, total=False):
    """An instance's own settings over its module's (`PATCH /instances/{id}`)."""

    args: list[str] | None
    env: dict[str, str]
    user: str | None


class InstanceRow(TypedDict, total=False):
    adopted: bool
    deleted: bool  # an event: the instance is gone
    desired_state: str
    drift: bool  # its module's version, env or args differ from what it last started with
    exit_code: int | None
    health: str
    health_detail: str | None
    id: Required[str]
    index: int | None  # GDOS_INSTANCE_INDEX
    last_error: str | None
    module_id: str | None
    name: str
    node_id: str
    pid: int | None
    previous_version: str | None
    restarts: int
    settings: InstanceSettingsRow
    started_at: str | None
    state: str
    system_id: str
    user: str | None
    version: str | None
    # the console's own
    health_check: bool  # whether its package has a health check (when known)
    module_name: str
    node_name: str
    system_name: str


class PackageRow(TypedDict, total=False):
    deleted: bool  # an event: the package is gone
    description: str
    id: Required[str]
    manifest: dict[str, Any]
    name: str
    os: str | None
    sha256: str
    size: int
    uploaded_at: str
    version: str


class ModuleRow(TypedDict, total=False):
    args: list[str] | None
    env: dict[str, str]
    id: Required[str]
    name: str
    package: str
    start_order: int
    system_id: str
    version: str | None
    # the console's own
    newest_version: str  # the newest upload of its package (what "newest" means now)


class SystemRow(TypedDict, total=False):
    """A system with what it holds (`GET /systems/{id}`); events carry the system alone."""

    created_at: str | None
    deleted: bool  # an event: the system is gone
    description: str
    id: Required[str]
    instances: list[InstanceRow]
    modules: list[ModuleRow]
    name: str


class StepRow(TypedDict, total=False):
    """One instance's step in a system's start or stop, or in a rollout or rollback."""

    batch: int | None  # rollouts: its batch (1, 2, ...)
    error: str | None
    finished_at: str | None
    from_version: str | None
    instance_id: Required[str]
    level: int
    name: str
    node_id: str
    started_at: str | None
    # pending|starting|waiting_health|stopping|done|failed|skipped|cancelled; rollouts also
    # preparing|prepared|switching|rolling_back|rolled_back
    state: str
    to_version: str | None
    # the console's own
    node_name: str


class RolloutRow(TypedDict, total=False):
    """How a rollout or rollback goes and where it stands (an operation's `rollout`)."""

    auto_rollback: bool
    batch: int | None
    batch_size: int | str
    batches: int | None
    canary: int
    min_ready_seconds: float
    modules: dict[str, dict[str, Any]]  # module id -> {"name", "from", "to"}
    pause_seconds: float
    phase: str  # preparing|rolling|paused|rolling_back|done


class OperationRow(TypedDict, total=False):
    """A system's start or stop, level by level, or a rollout or rollback, batch by batch."""

    actor: str
    created_at: str | None
    error: str | None
    finished_at: str | None
    id: Required[str]
    kind: str  # start|stop|rollout|rollback
    level: int | None
    module_id: str | None
    paused: bool  # a canary waiting to be resumed (or cancelled)
    resumed: int
    rollout: RolloutRow | None
    state: str
    steps: list[StepRow]
    system_id: str


class ReleaseInstanceRow(TypedDict, total=False):
    error: str | None
    instance_id: Required[str]
    name: str
    node_id: str
    state: str
    to: str | None
    # "from" is a keyword: read it with row.get("from")


class ReleaseRow(TypedDict, total=False):
    """One rollout or rollback of a module (`GET /modules/{id}/releases`); for an instance's
    history, its own entry's versions, state and error are lifted to the row."""

    actor: str
    error: str | None
    finished_at: str | None
    from_version: str | None
    instances: list[ReleaseInstanceRow]
    kind: str
    module_id: str
    operation_id: Required[str]
    started_at: str | None
    state: str
    to_version: str | None


class AlertRow(TypedDict, total=False):
    acked: bool
    acked_at: str | None
    acked_by: str | None
    duration_seconds: float | None
    id: Required[str]
    metric: str
    node_id: str | None
    resolved_at: str | None
    resolved_value: float | str | None
    rule_id: str | None
    rule_name: str
    severity: str
    silenced: bool
    started_at: str
    state: str
    system_id: str | None
    target: str
    target_id: str
    target_kind: str
    target_name: str
    value: float | str | None


class AlertRuleRow(TypedDict, total=False):
    created_at: str | None
    deleted: bool  # an event: the rule is gone
    enabled: bool
    for_seconds: float
    hysteresis: float
    id: Required[str]
    metric: str
    name: str
    op: str
    resolve_for_seconds: float
    scope: dict[str, str]
    severity: str
    threshold: float | str
    updated_at: str | None
    webhook_url: str | None
    # the console's own
    scope_text: str  # the scope by name


class SilenceRow(TypedDict, total=False):
    active: bool
    comment: str
    created_at: str | None
    created_by: str
    ends_at: str
    id: Required[str]
    matcher: dict[str, str]
    starts_at: str
    # the console's own
    matcher_text: str  # the matcher by name


def as_row(model: BaseModel, row: type[R]) -> R:
    """An API model as the row type that holds it, e.g. `as_row(node, NodeRow)`."""
    return cast(R, model.model_dump())
