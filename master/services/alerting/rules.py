"""Alert rules as the evaluator sees them: immutable, validated, with defaults filled in.

A rule compares one metric of each target in its scope with a threshold. Numeric rules
(`cpu_percent`, `rss_bytes`) watch instances' samples; `state` watches instance states;
`node_status` watches nodes. Resolution has hysteresis: a numeric alert ends only when the
value is `hysteresis` beyond the threshold on the good side, for `resolve_for_seconds`.
"""

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from master.db import models
from protocol.errors import ErrorCode, GdosError
from protocol.monitoring import NODE_METRICS, NODE_STATUSES, NUMERIC_METRICS
from protocol.states import InstanceState

DEFAULT_HYSTERESIS = 0.05  # of |threshold|
MIN_RESOLVE_SECONDS = 5.0
SCOPE_KINDS = ("system_id", "node_id", "instance_id")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    metric: str
    op: str
    threshold: float | str
    for_seconds: float
    scope_kind: str  # global | system | node | instance
    scope_id: str | None
    severity: str
    webhook_url: str | None
    hysteresis: float
    resolve_for_seconds: float
    enabled: bool = True

    @property
    def numeric(self) -> bool:
        return self.metric in NUMERIC_METRICS

    @property
    def on_nodes(self) -> bool:
        return self.metric in NODE_METRICS

    def breached(self, value: Any) -> bool:
        return compare(self.op, value, self.threshold)

    def cleared(self, value: Any) -> bool:
        """On the good side, by the hysteresis margin for numeric rules."""
        if self.breached(value):
            return False
        if not self.numeric or self.hysteresis <= 0:
            return True
        t, m = float(self.threshold), self.hysteresis
        if self.op == ">":
            return bool(value <= t - m)
        if self.op == "<":
            return bool(value >= t + m)
        if self.op == "==":
            return bool(abs(value - t) >= m)
        return True  # "!=": back to the exact value

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.threshold} for {self.for_seconds:g}s"


def compare(op: str, value: Any, threshold: Any) -> bool:
    if value is None:
        return False
    if op == ">":
        return bool(value > threshold)
    if op == "<":
        return bool(value < threshold)
    if op == "==":
        return bool(value == threshold)
    return bool(value != threshold)


_TESTS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


def breach_test(rule: Rule) -> Callable[[float, Any], Any]:
    """`rule.breached` for a number (never None) as one C call: `test(value, rule.threshold)`."""
    return _TESTS.get(rule.op, operator.ne)


def invalid(field: str, message: str) -> GdosError:
    return GdosError(ErrorCode.VALIDATION_FAILED, f"{field}: {message}", {"field": field})


def normalize(body: dict[str, Any]) -> dict[str, Any]:
    """Check what the field types alone cannot (metric, op and threshold together; one scope)
    and return the column values of an `AlertRule` row."""
    metric, op, threshold = body["metric"], body["op"], body["threshold"]
    if metric in NUMERIC_METRICS:
        if isinstance(threshold, str):
            raise invalid("threshold", f"{metric} compares with a number, not a word")
        if not math.isfinite(threshold) or threshold < 0:
            raise invalid("threshold", f"{metric} compares with a finite number >= 0")
        threshold = float(threshold)
    else:
        if op not in ("==", "!="):
            raise invalid("op", f"{metric} can only be compared with == or !=")
        allowed = NODE_STATUSES if metric in NODE_METRICS else tuple(s.value for s in InstanceState)
        if not isinstance(threshold, str) or threshold not in allowed:
            raise invalid("threshold", f"{metric} compares with one of: {', '.join(allowed)}")
    scope = {k: v for k, v in (body.get("scope") or {}).items() if v}
    if len(scope) > 1:
        raise invalid("scope", "give at most one of system_id, node_id, instance_id")
    kind, scope_id = next(iter(scope.items())) if scope else ("global", None)
    url = body.get("webhook_url")
    return {
        "name": body["name"],
        "metric": metric,
        "op": op,
        "threshold": threshold,
        "for_seconds": float(body.get("for_seconds") or 0.0),
        "scope_kind": kind.removesuffix("_id"),
        "scope_id": scope_id,
        "severity": body.get("severity") or "warning",
        "webhook_url": str(url) if url else None,
        "hysteresis": body.get("hysteresis"),
        "resolve_for_seconds": body.get("resolve_for_seconds"),
        "enabled": bool(body.get("enabled", True)),
    }


def from_row(row: models.AlertRule) -> Rule:
    threshold = row.threshold
    numeric = row.metric in NUMERIC_METRICS
    if numeric:
        threshold = float(threshold)
    hysteresis = row.hysteresis
    if hysteresis is None:
        hysteresis = abs(float(threshold)) * DEFAULT_HYSTERESIS if numeric else 0.0
    resolve_for = row.resolve_for_seconds
    if resolve_for is None:
        resolve_for = max(row.for_seconds, MIN_RESOLVE_SECONDS)
    return Rule(
        id=row.id,
        name=row.name,
        metric=row.metric,
        op=row.op,
        threshold=threshold,
        for_seconds=row.for_seconds,
        scope_kind=row.scope_kind,
        scope_id=row.scope_id,
        severity=row.severity,
        webhook_url=row.webhook_url,
        hysteresis=hysteresis,
        resolve_for_seconds=resolve_for,
        enabled=row.enabled,
    )


def scope_of(row: models.AlertRule) -> dict[str, str]:
    if row.scope_kind == "global" or not row.scope_id:
        return {}
    return {f"{row.scope_kind}_id": row.scope_id}
