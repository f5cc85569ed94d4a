"""REST bodies of monitoring and alerting (API.md "Monitoring and alerts"): metrics queries,
alert rules, alerts, silences, and the webhook body."""

from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    WithJsonSchema,
)

from protocol.rest_base import JSON_NUMBER, NullMeans, PatchBody, RequestBody, parse_iso
from protocol.states import InstanceState

Metric = Literal["cpu_percent", "rss_bytes", "state", "node_status"]
Op = Literal[">", "<", "==", "!="]
Severity = Literal["warning", "critical"]
AlertState = Literal["firing", "resolved"]

NUMERIC_METRICS = frozenset({"cpu_percent", "rss_bytes"})
NODE_METRICS = frozenset({"node_status"})
NODE_STATUSES = ("online", "offline")
MAX_FOR_SECONDS = 7 * 86400.0


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number or a state word, not true or false")
    return value


# JSON numbers only: pydantic's lax mode would read `true` as 1.0 and "5" as 5.0. A threshold
# is a number or a word, checked as a whole so an error names the field, not a union member.
Threshold = Annotated[float | str, BeforeValidator(_not_a_boolean)]
ForSeconds = Annotated[float, Field(ge=0, le=MAX_FOR_SECONDS), JSON_NUMBER]
Hysteresis = Annotated[float, Field(ge=0), JSON_NUMBER]


def _iso_time(text: str) -> str:
    try:
        parse_iso(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 time such as 2026-11-27T10:00:00Z") from None
    return text


IsoTime = Annotated[
    str, AfterValidator(_iso_time), WithJsonSchema({"type": "string", "format": "date-time"})
]

# What the routes check across fields, stated in the schema too (JSON Schema can say these).
_GIVEN_ID: dict[str, Any] = {"type": "string", "minLength": 1}  # "" and null mean "not given"
_THRESHOLD_BY_METRIC: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {"metric": {"enum": sorted(NUMERIC_METRICS)}}},
            "then": {"properties": {"threshold": {"type": "number", "minimum": 0}}},
        },
        *(
            {
                "if": {"properties": {"metric": {"const": metric}}},
                "then": {
                    "properties": {"op": {"enum": ["==", "!="]}, "threshold": {"enum": words}}
                },
            }
            for metric, words in (
                ("state", [s.value for s in InstanceState]),
                ("node_status", list(NODE_STATUSES)),
            )
        ),
    ]
}


_AT_LEAST_ONE: dict[str, Any] = {
    "anyOf": [
        *(
            {"required": [name], "properties": {name: _GIVEN_ID}}
            for name in ("rule_id", "system_id", "node_id", "instance_id")
        ),
        *(
            {"required": [name], "not": {"properties": {name: {"type": "null"}}}}
            for name in ("metric", "severity")
        ),
    ]
}


def _at_most_one(*names: str) -> dict[str, Any]:
    pairs = [
        {"required": [a, b], "properties": {a: _GIVEN_ID, b: _GIVEN_ID}}
        for a, b in combinations(names, 2)
    ]
    return {"not": {"anyOf": pairs}}


# -- metrics -------------------------------------------------------------------------------


class NodeSample(BaseModel):
    ts: str
    cpu_percent: float
    mem_percent: float
    disk_percent: float
    net_rx_bps: int
    net_tx_bps: int
    load1: float


class InstanceSample(BaseModel):
    ts: str
    cpu_percent: float
    rss_bytes: int
    read_bps: int
    write_bps: int
    threads: int


class NodeMetricsOut(BaseModel):
    id: str
    seconds: float
    samples: list[NodeSample]


class InstanceMetricsOut(BaseModel):
    id: str
    seconds: float
    samples: list[InstanceSample]


class StartUpOut(BaseModel):
    """When the master reached each phase of its start (a debug endpoint for benchmarks)."""

    marks: dict[str, float] = Field(
        description="phase -> wall time (seconds since the epoch): first reached, or for "
        "repeated events (`hellos_applied`, `greeted`) the latest"
    )
    counts: dict[str, int] = Field(description="repeated event -> how many times it happened")
    collecting: bool = Field(
        description="the garbage collector runs (it is off while the master starts)"
    )


class LoopLagOut(BaseModel):
    """The master's event-loop lateness samples (a debug endpoint for benchmarks)."""

    period: float = Field(description="seconds between samples")
    samples: list[tuple[float, float, float]] = Field(
        description="[wall time (seconds since the epoch), lag in seconds, CPU seconds the "
        "master used over the sample's interval], oldest first"
    )


# -- alert rules ---------------------------------------------------------------------------


class Scope(RequestBody):
    """At most one of the three; none means every instance (or node) of the cluster."""

    model_config = ConfigDict(json_schema_extra=_at_most_one("system_id", "node_id", "instance_id"))

    system_id: str | None = Field(default=None, max_length=64)
    node_id: str | None = Field(default=None, max_length=64)
    instance_id: str | None = Field(default=None, max_length=64)


class AlertRuleIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            **_THRESHOLD_BY_METRIC,
            "examples": [
                {
                    "name": "hot",
                    "metric": "cpu_percent",
                    "op": ">",
                    "threshold": 80,
                    "for_seconds": 30,
                },
                {
                    "name": "down",
                    "metric": "state",
                    "op": "==",
                    "threshold": "failed",
                    "severity": "critical",
                },
            ],
        }
    )

    name: str = Field(min_length=1, max_length=128)
    metric: Metric
    op: Op
    threshold: Threshold = Field(
        description="a number for cpu_percent (percent of one core) and rss_bytes; an instance "
        "state word for state; online|offline for node_status"
    )
    for_seconds: ForSeconds = 0.0
    scope: Scope = Field(default_factory=Scope)
    severity: Severity = "warning"
    webhook_url: HttpUrl | None = None
    hysteresis: Hysteresis | None = Field(
        default=None,
        description="numeric rules resolve only once the value is this far on the good side "
        "(default 5 % of the threshold)",
    )
    resolve_for_seconds: ForSeconds | None = Field(
        default=None,
        description="...and has stayed there this long (default max(for_seconds, 5))",
    )
    enabled: StrictBool = True  # lax bool would take 1, "yes" and "0"


class AlertRulePatch(PatchBody):
    """Only the fields given change. Null puts scope, webhook_url, hysteresis and
    resolve_for_seconds back to their defaults; the other fields take no null."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"threshold": 90, "enabled": False}, {"severity": "critical"}]
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=128)
    metric: Metric | None = None
    op: Op | None = None
    threshold: Threshold | None = None
    for_seconds: ForSeconds | None = None
    scope: Annotated[Scope | None, NullMeans("every instance (or node)")] = None
    severity: Severity | None = None
    webhook_url: Annotated[HttpUrl | None, NullMeans("no webhook")] = None
    hysteresis: Annotated[Hysteresis | None, NullMeans("the default, 5 % of the threshold")] = None
    resolve_for_seconds: Annotated[
        ForSeconds | None, NullMeans("the default, max(for_seconds, 5)")
    ] = None
    enabled: StrictBool | None = None


class AlertRuleOut(BaseModel):
    id: str
    name: str
    metric: str
    op: str
    threshold: float | str
    for_seconds: float
    scope: dict[str, str]
    severity: str
    webhook_url: str | None
    hysteresis: float
    resolve_for_seconds: float
    enabled: bool
    created_at: str | None
    updated_at: str | None


# -- alerts --------------------------------------------------------------------------------


class AlertOut(BaseModel):
    id: str
    rule_id: str | None
    rule_name: str
    metric: str
    severity: str
    target: str  # "<kind>/<id>", e.g. "instance/4f2a9c01b7de"
    target_kind: Literal["instance", "node"]
    target_id: str
    target_name: str
    node_id: str | None
    system_id: str | None
    value: float | str | None  # the value that fired it
    resolved_value: float | str | None
    state: AlertState
    started_at: str
    resolved_at: str | None
    duration_seconds: float | None
    acked: bool
    acked_at: str | None
    acked_by: str | None
    silenced: bool


# -- silences ------------------------------------------------------------------------------


class Matcher(RequestBody):
    """Every given field must equal the alert's; a node_id also matches that node's instances.
    At least one is given."""

    model_config = ConfigDict(json_schema_extra=_AT_LEAST_ONE)

    rule_id: str | None = Field(default=None, max_length=64)
    metric: Metric | None = None
    severity: Severity | None = None
    system_id: str | None = Field(default=None, max_length=64)
    node_id: str | None = Field(default=None, max_length=64)
    instance_id: str | None = Field(default=None, max_length=64)


class SilenceIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"matcher": {"severity": "warning"}, "duration_seconds": 3600, "comment": "upgrade"}
            ],
            "oneOf": [
                {"required": ["ends_at"], "properties": {"ends_at": {"type": "string"}}},
                {
                    "required": ["duration_seconds"],
                    "properties": {"duration_seconds": {"type": "number"}},
                },
            ],
        }
    )

    matcher: Matcher
    starts_at: IsoTime | None = Field(default=None, description="ISO 8601; default now")
    ends_at: IsoTime | None = Field(default=None, description="ISO 8601; or give duration_seconds")
    duration_seconds: Annotated[float, Field(gt=0, le=366 * 86400.0), JSON_NUMBER] | None = None
    comment: str = Field(default="", max_length=1024)


class SilenceOut(BaseModel):
    id: str
    matcher: dict[str, str]
    starts_at: str
    ends_at: str
    comment: str
    created_by: str
    created_at: str | None
    active: bool


# -- webhooks ------------------------------------------------------------------------------


class WebhookRule(BaseModel):
    id: str | None
    name: str
    metric: str
    op: str
    threshold: float | str | None
    for_seconds: float | None
    severity: str


class WebhookBody(BaseModel):
    """What a rule's `webhook_url` receives (POST, application/json), once per transition."""

    version: Literal[1] = 1
    event: AlertState
    alert: AlertOut
    rule: WebhookRule
    master: str
    sent_at: str
