"""Alert rules, alerts (firing and resolved, with ack) and silences."""

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import or_, select

from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.api.params import ISO_ONLY, timestamp
from master.db import models
from master.db.session import get_or_404
from master.services.alerting import rules
from master.services.alerting.serializers import alert_out, rule_out, silence_out
from protocol.errors import ErrorCode, GdosError
from protocol.monitoring import (
    AlertOut,
    AlertRuleIn,
    AlertRuleOut,
    AlertRulePatch,
    SilenceIn,
    SilenceOut,
)
from protocol.rest import parse_iso

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=ERROR_RESPONSES)
Id = Annotated[str, Path(max_length=64)]


def _time(field: str, text: str) -> float:
    try:
        return parse_iso(text)
    except ValueError:
        raise rules.invalid(
            field, f"{text!r} is not an ISO 8601 time (2026-11-27T10:00:00Z)"
        ) from None


# -- rules ---------------------------------------------------------------------------------


def get_rule(s: SessionDep, rule_id: str) -> models.AlertRule:
    return get_or_404(s, models.AlertRule, rule_id, "alert rule")


def _check_scope(s: SessionDep, values: dict[str, Any]) -> None:
    kind, ident = values["scope_kind"], values["scope_id"]
    model = {"system": models.System, "node": models.Node, "instance": models.Instance}.get(kind)
    if model is None:
        return
    row = s.get(model, ident)
    if row is None or (isinstance(row, models.Node) and row.revoked):
        raise GdosError(
            ErrorCode.NOT_FOUND, f"scope: no {kind} {ident}", {"field": f"scope.{kind}_id"}
        )


def _as_body(row: models.AlertRule) -> dict[str, Any]:
    return {
        "name": row.name,
        "metric": row.metric,
        "op": row.op,
        "threshold": row.threshold,
        "for_seconds": row.for_seconds,
        "scope": rules.scope_of(row),
        "severity": row.severity,
        "webhook_url": row.webhook_url,
        "hysteresis": row.hysteresis,
        "resolve_for_seconds": row.resolve_for_seconds,
        "enabled": row.enabled,
    }


@router.post("/alert-rules", response_model=AlertRuleOut, status_code=201)
async def create_rule(
    body: AlertRuleIn, principal: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> AlertRuleOut:
    """Watch a metric: numbers (`cpu_percent`, `rss_bytes`) with > < == !=, or a state word
    (`state`, `node_status`) with == !=."""
    values = rules.normalize(body.model_dump(mode="json"))
    _check_scope(s, values)
    row = models.AlertRule(**values, created_by=principal.name)
    s.add(row)
    s.commit()
    rule = svc.alerts.set_rule(row)
    request.state.audit_target = f"alert_rule={row.id}"
    request.state.audit_detail = {"rule": rule.describe()}
    out = rule_out(row, rule)
    svc.hub.publish("alert_rule", out.model_dump(mode="json"))
    return out


@router.get("/alert-rules", response_model=list[AlertRuleOut])
def list_rules(_: Viewer, s: SessionDep) -> list[AlertRuleOut]:
    rows = s.scalars(select(models.AlertRule).order_by(models.AlertRule.created_at))
    return [rule_out(row, rules.from_row(row)) for row in rows]


@router.get("/alert-rules/{rule_id}", response_model=AlertRuleOut)
def read_rule(rule_id: Id, _: Viewer, s: SessionDep) -> AlertRuleOut:
    row = get_rule(s, rule_id)
    return rule_out(row, rules.from_row(row))


@router.patch("/alert-rules/{rule_id}", response_model=AlertRuleOut)
async def update_rule(
    rule_id: Id,
    body: AlertRulePatch,
    _: Operator,
    request: Request,
    s: SessionDep,
    svc: ServicesDep,
) -> AlertRuleOut:
    """Change some fields; the rest stay. Alerts of targets the rule no longer covers resolve."""
    row = get_rule(s, rule_id)
    merged = _as_body(row)
    merged.update(body.model_dump(mode="json", exclude_unset=True))
    if merged.get("scope") is None:
        merged["scope"] = {}
    values = rules.normalize(merged)
    _check_scope(s, values)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = time.time()
    s.commit()
    rule = svc.alerts.set_rule(row)
    request.state.audit_detail = {"rule": rule.describe()}
    out = rule_out(row, rule)
    svc.hub.publish("alert_rule", out.model_dump(mode="json"))
    return out


@router.delete("/alert-rules/{rule_id}", status_code=204, response_class=Response)
async def delete_rule(rule_id: Id, _: Operator, s: SessionDep, svc: ServicesDep) -> Response:
    """Its firing alerts resolve; past alerts stay in the history."""
    row = get_rule(s, rule_id)
    s.delete(row)
    s.commit()
    svc.alerts.remove_rule(rule_id)
    svc.hub.publish("alert_rule", {"id": rule_id, "deleted": True})
    return Response(status_code=204)


# -- alerts --------------------------------------------------------------------------------


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    _: Viewer,
    s: SessionDep,
    state: Literal["firing", "resolved"] | None = None,
    since: Annotated[
        datetime | None,
        Query(description="ISO 8601: alerts that started or resolved at or after this time"),
        ISO_ONLY,
    ] = None,
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AlertOut]:
    """Newest first."""
    q = select(models.Alert)
    if state:
        q = q.where(models.Alert.state == state)
    if since is not None:
        t = timestamp(since)
        q = q.where(or_(models.Alert.started_at >= t, models.Alert.resolved_at >= t))
    if rule_id:
        q = q.where(models.Alert.rule_id == rule_id)
    if target_id:
        q = q.where(models.Alert.target_id == target_id)
    q = q.order_by(models.Alert.started_at.desc()).limit(limit)
    return [alert_out(row) for row in s.scalars(q)]


@router.get("/alerts/{alert_id}", response_model=AlertOut)
def read_alert(alert_id: Id, _: Viewer, s: SessionDep) -> AlertOut:
    return alert_out(get_or_404(s, models.Alert, alert_id, "alert"))


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
async def ack_alert(alert_id: Id, principal: Operator, s: SessionDep, svc: ServicesDep) -> AlertOut:
    """Someone is on it: recorded once (who, when); the alert keeps firing until it resolves."""
    return alert_out(svc.alerts.ack(s, alert_id, principal.name))


# -- silences ------------------------------------------------------------------------------


def get_silence(s: SessionDep, silence_id: str) -> models.Silence:
    return get_or_404(s, models.Silence, silence_id, "silence")


@router.post("/silences", response_model=SilenceOut, status_code=201)
async def create_silence(
    body: SilenceIn, principal: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> SilenceOut:
    """Alerts matching `matcher` that fire between `starts_at` and `ends_at` are recorded and
    shown, but send no webhook."""
    matcher = {k: v for k, v in body.matcher.model_dump().items() if v}
    if not matcher:
        raise rules.invalid(
            "matcher",
            "give at least one of rule_id, metric, severity, system_id, node_id, instance_id",
        )
    now = time.time()
    starts = _time("starts_at", body.starts_at) if body.starts_at else now
    if (body.ends_at is None) == (body.duration_seconds is None):
        raise rules.invalid("ends_at", "give either ends_at or duration_seconds")
    ends = _time("ends_at", body.ends_at) if body.ends_at else starts + (body.duration_seconds or 0)
    if ends <= starts:
        raise rules.invalid("ends_at", "must be after starts_at")
    if ends <= now:
        raise rules.invalid("ends_at", "is in the past: the silence would never apply")
    row = models.Silence(
        matcher=matcher,
        starts_at=starts,
        ends_at=ends,
        comment=body.comment,
        created_by=principal.name,
    )
    s.add(row)
    s.commit()
    svc.alerts.set_silence(row)
    request.state.audit_target = f"silence={row.id}"
    request.state.audit_detail = {"matcher": matcher}
    return silence_out(row)


@router.get("/silences", response_model=list[SilenceOut])
def list_silences(
    _: Viewer,
    s: SessionDep,
    all: Annotated[bool, Query(description="also the expired ones")] = False,
) -> list[SilenceOut]:
    q = select(models.Silence).order_by(models.Silence.starts_at.desc())
    if not all:
        q = q.where(models.Silence.ends_at > time.time())
    return [silence_out(row) for row in s.scalars(q)]


@router.get("/silences/{silence_id}", response_model=SilenceOut)
def read_silence(silence_id: Id, _: Viewer, s: SessionDep) -> SilenceOut:
    return silence_out(get_silence(s, silence_id))


@router.delete("/silences/{silence_id}", status_code=204, response_class=Response)
async def expire_silence(silence_id: Id, _: Operator, s: SessionDep, svc: ServicesDep) -> Response:
    """End it now (it stays listed with ?all=true)."""
    row = get_silence(s, silence_id)
    now = time.time()
    if row.ends_at > now:
        row.ends_at = max(now, row.starts_at)
        s.commit()
    svc.alerts.remove_silence(silence_id)
    return Response(status_code=204)
