"""REST bodies of systems, modules, instances, adoption and batch operations (API.md, Systems,
modules, instances)."""

from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from protocol import pattern
from protocol.manifest import (
    ACCOUNT_SCHEMA_PATTERN,
    NAME_SCHEMA_PATTERN,
    PORT_TEXT_PATTERN,
    HealthCheck,
    check_account,
)
from protocol.messages import RestartMode
from protocol.rest_base import JSON_NUMBER, NullMeans, PatchBody, RequestBody
from protocol.rest_launch import COMMAND_LIST_SCHEMA, ArgList, Command, EnvMap, LaunchSettings
from protocol.wire import describe

StartOrder = Annotated[int, Field(ge=0, le=10_000), JSON_NUMBER]


class SystemIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "payments", "description": "payment gateway and its workers"}]
        }
    )

    name: str = Field(min_length=1, max_length=128, pattern=NAME_SCHEMA_PATTERN)
    description: str = Field(default="", max_length=4096)


class SystemPatch(PatchBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"description": "payment gateway, workers and reports"}]}
    )

    description: str = Field(max_length=4096)


class ModuleIn(RequestBody, LaunchSettings):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "api",
                    "package": "payment-service",
                    "version": None,
                    "start_order": 2,
                    "env": {"GIN_MODE": "release"},
                    "args": ["-c", "../conf/config.yaml"],
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=128, pattern=NAME_SCHEMA_PATTERN)
    package: str = Field(min_length=1, max_length=128)
    version: str | None = None
    start_order: StartOrder = 1
    env: EnvMap = Field(default_factory=dict)
    args: ArgList | None = None


class ModulePatch(PatchBody, LaunchSettings):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"version": "1.0.2", "env": {"GIN_MODE": "debug"}}, {"start_order": 3}]
        }
    )

    version: Annotated[str | None, NullMeans("the newest version of the package")] = None
    start_order: StartOrder | None = None
    env: EnvMap | None = None
    args: Annotated[ArgList | None, NullMeans("the args of the package's service.json")] = None


class ModuleOut(BaseModel):
    id: str
    system_id: str
    name: str
    package: str
    version: str | None
    start_order: int
    env: dict[str, str]
    args: list[str] | None


class InstanceCreate(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"module_id": "4f2a9c01b7de", "node_id": "9d1e0c4b2a77"}]}
    )

    module_id: str = Field(min_length=1, max_length=64)
    node_id: str = Field(min_length=1, max_length=64)


class InstanceOut(BaseModel):
    id: str
    system_id: str
    module_id: str | None
    node_id: str
    name: str
    state: str
    desired_state: str
    health: str
    pid: int | None
    started_at: str | None
    restarts: int
    exit_code: int | None
    last_error: str | None
    adopted: bool
    version: str | None
    health_detail: str | None = None
    user: str | None = Field(
        default=None, description="the account its process runs as on the node ('root' is marked)"
    )
    cpu_percent: float | None = Field(
        default=None, description="newest sample (REST reads only; null when none is recent)"
    )
    rss_bytes: int | None = Field(
        default=None, description="newest sample (REST reads only; null when none is recent)"
    )
    previous_version: str | None = Field(
        default=None, description="the version it ran before its last upgrade, rollout or rollback"
    )
    drift: bool = Field(
        default=False,
        description="its module's version, env or args differ from what it was last started with",
    )
    index: int | None = Field(
        default=None, description="GDOS_INSTANCE_INDEX: 1, 2, ... in its module"
    )
    settings: dict[str, Any] = Field(
        default_factory=lambda: {"env": {}, "args": None, "user": None},
        description='its own settings over its module\'s: {"env", "args", "user"}',
    )


def _health_schema() -> dict[str, Any]:
    """service.json's health check as JSON Schema: msgspec's, plus what HealthCheck checks."""
    schema: dict[str, Any] = msgspec.json.schema(HealthCheck)["$defs"]["HealthCheck"]
    props = schema["properties"]
    props["http"]["anyOf"][0]["pattern"] = "^(https?://|\\$\\{)"
    props["tcp"]["anyOf"][1]["pattern"] = PORT_TEXT_PATTERN
    props["command"]["anyOf"][0] = COMMAND_LIST_SCHEMA
    schema["oneOf"] = [
        {"required": [kind], "not": {"properties": {kind: {"type": "null"}}}}
        for kind in ("tcp", "http", "command")
    ]
    return schema


HEALTH_SCHEMA = _health_schema()
_HEALTH_INTS = {k for k, v in HEALTH_SCHEMA["properties"].items() if "integer" in str(v)}

_ADOPT_NEEDS = {
    "pid_file": "pid_file",
    "process_name": "process_name",
    "cmdline": "cmdline_pattern",
}
# The rules across fields that AdoptIn's validator checks, stated in its schema too.
_ADOPT_RULES: dict[str, Any] = {
    "allOf": [
        *(
            {
                "if": {"properties": {"strategy": {"const": strategy}}},
                "then": {"required": [field], "properties": {field: {"type": "string"}}},
            }
            for strategy, field in _ADOPT_NEEDS.items()
        ),
        {
            "if": {
                "properties": {"restart": {"enum": ["on-failure", "always"]}},
                "required": ["restart"],
            },
            "then": {
                "required": ["start_command"],
                "not": {"properties": {"start_command": {"type": "null"}}},
            },
        },
    ]
}


class AdoptIn(RequestBody):
    """Take over a process GDOS did not start (API.md, "Adopt an external process")."""

    model_config = ConfigDict(
        json_schema_extra={
            **_ADOPT_RULES,
            "examples": [
                {
                    "system_id": "5c3e9b7a1d20",
                    "node_id": "9d1e0c4b2a77",
                    "name": "legacy-billing",
                    "strategy": "pid_file",
                    "pid_file": "/var/run/billing.pid",
                    "start_command": ["/opt/billing/bin/start", "--daemon"],
                    "restart": "on-failure",
                }
            ],
        }
    )

    system_id: str = Field(min_length=1, max_length=64)
    node_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=160, pattern=NAME_SCHEMA_PATTERN)
    strategy: Literal["pid_file", "process_name", "cmdline"]
    pid_file: str | None = Field(default=None, min_length=1, max_length=4096)
    process_name: str | None = Field(default=None, min_length=1, max_length=255)
    cmdline_pattern: str | None = Field(
        default=None,
        min_length=1,
        max_length=pattern.MAX_PATTERN,
        description="RE2 syntax (linear time; no backreferences or lookaround)",
        json_schema_extra={"format": "regex"},
    )
    start_command: Command | None = None
    stop_command: Command | None = None
    stop_timeout: Annotated[float, Field(gt=0, le=3600), JSON_NUMBER] = 10.0
    log_paths: dict[str, str] = Field(default_factory=dict)
    health: Annotated[dict[str, Any], WithJsonSchema(HEALTH_SCHEMA)] | None = Field(
        default=None,
        description='as in service.json: {"tcp": 8888} | {"http": URL} | {"command": [...]}, '
        "with optional timeout, interval, ready_timeout, failure_threshold, host",
    )
    restart: RestartMode = "no"
    restart_limit: Annotated[int, Field(ge=1, le=1000), JSON_NUMBER] = 5
    restart_window: Annotated[float, Field(gt=0, le=24 * 3600), JSON_NUMBER] = 60.0
    start_order: StartOrder = 0
    user: str | None = Field(
        default=None,
        max_length=33,
        description="who the start, stop and probe commands run as (default: the agent's --default-user)",
        json_schema_extra={"pattern": ACCOUNT_SCHEMA_PATTERN},
    )
    group: str | None = Field(
        default=None, max_length=33, json_schema_extra={"pattern": ACCOUNT_SCHEMA_PATTERN}
    )

    @field_validator("user", "group")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        check_account(value)
        return value

    @field_validator("health")
    @classmethod
    def _health(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        # JSON Schema's integer admits 8888.0; msgspec's int does not.
        value = {
            k: int(v) if k in _HEALTH_INTS and isinstance(v, float) and v.is_integer() else v
            for k, v in value.items()
        }
        try:
            return HealthCheck.from_data(value).to_dict()  # service.json's rules, defaults filled
        except msgspec.ValidationError as exc:
            path, message = describe(exc)
            raise ValueError(f"health{'.' + path if path else ''}: {message}") from None

    @model_validator(mode="after")
    def _strategy_has_its_field(self) -> "AdoptIn":
        field = _ADOPT_NEEDS[self.strategy]
        if not getattr(self, field):
            raise ValueError(f"strategy {self.strategy!r} needs {field!r}")
        if self.cmdline_pattern is not None:
            try:
                pattern.check(self.cmdline_pattern)
            except pattern.PatternError as exc:
                raise ValueError(f"cmdline_pattern: {exc}") from None
        if self.restart != "no" and not self.start_command:
            raise ValueError("a restart policy needs a start_command")
        return self


class BatchIn(RequestBody):
    ready_timeout: Annotated[float, Field(gt=0, le=24 * 3600), JSON_NUMBER] | None = Field(
        default=None,
        description="seconds each instance may take to become healthy (default: its health check's ready_timeout)",
    )


class StepOut(BaseModel):
    instance_id: str
    name: str
    node_id: str
    level: int
    # pending|starting|waiting_health|stopping|done|failed|skipped|cancelled; rollouts also
    # preparing|prepared|switching|rolling_back|rolled_back
    state: str
    error: str | None
    started_at: str | None
    finished_at: str | None
    # Rollouts and rollbacks: the versions it goes from and to, and its batch (1, 2, ...).
    from_version: str | None = None
    to_version: str | None = None
    batch: int | None = None


class OperationOut(BaseModel):
    id: str
    kind: Literal["start", "stop", "rollout", "rollback"]
    system_id: str
    state: Literal["running", "succeeded", "failed"]
    error: str | None
    actor: str
    created_at: str | None
    finished_at: str | None
    level: int | None  # the start_order being worked on
    resumed: int  # how many times a master restart resumed it
    steps: list[StepOut]
    module_id: str | None = None  # a module's rollout or rollback
    paused: bool = False  # a canary waiting for POST /operations/{id}/resume (or /cancel)
    rollout: dict[str, Any] | None = None  # rollouts and rollbacks: rest_releases.RolloutOut
    master_id: str | None = None  # the master driving it (several masters; null on SQLite)


class OperationStarted(OperationOut):
    operation_id: str


class SystemOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: str | None


class SystemDetail(SystemOut):
    modules: list[ModuleOut]
    instances: list[InstanceOut]
