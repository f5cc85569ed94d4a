"""Alerts, rules and silences to their REST and webhook bodies."""

import time
from typing import Any

from master.db import models
from master.services.alerting.active import AlertRecord
from master.services.alerting.rules import Rule, scope_of
from protocol.monitoring import AlertOut, AlertRuleOut, SilenceOut, WebhookBody, WebhookRule
from protocol.rest import iso


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
