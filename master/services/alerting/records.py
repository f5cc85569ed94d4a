"""Alerts and silences in memory, and their REST/webhook shapes."""

import time
from dataclasses import dataclass, field
from typing import Any

from master.db import models
from master.db.models import new_id
from master.services.alerting.rules import Rule, scope_of
from protocol.monitoring import AlertOut, AlertRuleOut, SilenceOut, WebhookBody, WebhookRule
from protocol.rest import iso


@dataclass(slots=True)
class AlertRecord:
    """A firing (or just resolved) alert, as the engine holds it until it is written."""

    rule_id: str | None
    rule_name: str
    metric: str
    severity: str
    target_kind: str
    target_id: str
    target_name: str
    node_id: str | None
    system_id: str | None
    value: Any
    started_at: float
    silenced: bool = False
    notified: bool = False
    state: str = "firing"
    resolved_value: Any = None
    resolved_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    id: str = field(default_factory=new_id)

    @property
    def duration(self) -> float | None:
        return None if self.resolved_at is None else self.resolved_at - self.started_at

    def to_row(self) -> models.Alert:
        return models.Alert(
            id=self.id,
            rule_id=self.rule_id,
            rule_name=self.rule_name,
            metric=self.metric,
            severity=self.severity,
            target_kind=self.target_kind,
            target_id=self.target_id,
            target_name=self.target_name,
            node_id=self.node_id,
            system_id=self.system_id,
            value=self.value,
            resolved_value=self.resolved_value,
            state=self.state,
            started_at=self.started_at,
            resolved_at=self.resolved_at,
            duration=self.duration,
            acked_at=self.acked_at,
            acked_by=self.acked_by,
            silenced=self.silenced,
            notified=self.notified,
        )

    @classmethod
    def from_row(cls, row: models.Alert) -> "AlertRecord":
        return cls(
            id=row.id,
            rule_id=row.rule_id,
            rule_name=row.rule_name,
            metric=row.metric,
            severity=row.severity,
            target_kind=row.target_kind,
            target_id=row.target_id,
            target_name=row.target_name,
            node_id=row.node_id,
            system_id=row.system_id,
            value=row.value,
            started_at=row.started_at,
            silenced=row.silenced,
            notified=row.notified,
            state=row.state,
            resolved_value=row.resolved_value,
            resolved_at=row.resolved_at,
            acked_at=row.acked_at,
            acked_by=row.acked_by,
        )

    def updates(self) -> dict[str, Any]:
        """The columns that change after an alert is first written."""
        return {
            "state": self.state,
            "resolved_value": self.resolved_value,
            "resolved_at": self.resolved_at,
            "duration": self.duration,
            "acked_at": self.acked_at,
            "acked_by": self.acked_by,
        }


def alert_out(a: AlertRecord | models.Alert) -> AlertOut:
    duration = None if a.resolved_at is None else a.resolved_at - a.started_at
    return AlertOut(
        id=a.id,
        rule_id=a.rule_id,
        rule_name=a.rule_name,
        metric=a.metric,
        severity=a.severity,
        target=f"{a.target_kind}/{a.target_id}",
        target_kind="node" if a.target_kind == "node" else "instance",
        target_id=a.target_id,
        target_name=a.target_name,
        node_id=a.node_id,
        system_id=a.system_id,
        value=a.value,
        resolved_value=a.resolved_value,
        state="resolved" if a.state == "resolved" else "firing",
        started_at=iso(a.started_at) or "",
        resolved_at=iso(a.resolved_at),
        duration_seconds=None if duration is None else round(duration, 3),
        acked=a.acked_at is not None,
        acked_at=iso(a.acked_at),
        acked_by=a.acked_by,
        silenced=a.silenced,
    )


def rule_out(row: models.AlertRule, rule: Rule) -> AlertRuleOut:
    return AlertRuleOut(
        id=row.id,
        name=row.name,
        metric=row.metric,
        op=row.op,
        threshold=rule.threshold,
        for_seconds=row.for_seconds,
        scope=scope_of(row),
        severity=row.severity,
        webhook_url=row.webhook_url,
        hysteresis=rule.hysteresis,
        resolve_for_seconds=rule.resolve_for_seconds,
        enabled=row.enabled,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    id: str
    matcher: dict[str, str]
    starts_at: float
    ends_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, a: AlertRecord) -> bool:
        for key, want in self.matcher.items():
            if key == "instance_id":
                got: str | None = a.target_id if a.target_kind == "instance" else None
            elif key == "rule_id":
                got = a.rule_id
            else:
                got = getattr(a, key, None)
            if got != want:
                return False
        return True


def silence_out(row: models.Silence, now: float | None = None) -> SilenceOut:
    now = time.time() if now is None else now
    return SilenceOut(
        id=row.id,
        matcher={str(k): str(v) for k, v in (row.matcher or {}).items()},
        starts_at=iso(row.starts_at) or "",
        ends_at=iso(row.ends_at) or "",
        comment=row.comment,
        created_by=row.created_by,
        created_at=iso(row.created_at),
        active=row.starts_at <= now < row.ends_at,
    )


def webhook_body(event: str, alert: AlertRecord, rule: Rule | None, master: str) -> dict[str, Any]:
    wrule = WebhookRule(
        id=alert.rule_id,
        name=alert.rule_name,
        metric=alert.metric,
        op=rule.op if rule else "",
        threshold=rule.threshold if rule else None,
        for_seconds=rule.for_seconds if rule else None,
        severity=alert.severity,
    )
    body = WebhookBody(
        event="resolved" if event == "resolved" else "firing",
        alert=alert_out(alert),
        rule=wrule,
        master=master,
        sent_at=iso(time.time()) or "",
    )
    return body.model_dump(mode="json")
