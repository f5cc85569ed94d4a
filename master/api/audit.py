"""The audit trail: who did what, when, from where (read side; rows come from AuditMiddleware)."""

import csv
import io
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select

from master.api.deps import SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.api.params import ISO_ONLY, timestamp
from master.db import models
from master.services.audit import audit_out
from master.services.audit_chain import verify_rows
from protocol.rest import AuditOut
from protocol.rest_records import AuditBreak, AuditVerifyOut

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=ERROR_RESPONSES)


@router.get(
    "/audit",
    response_model=list[AuditOut],
    responses={200: {"content": {"text/csv": {}}}},
)
def list_audit(
    _: Viewer,
    s: SessionDep,
    since: Annotated[datetime | None, Query(description="ISO 8601 time"), ISO_ONLY] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 500,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> list[AuditOut] | Response:
    """Newest first. `?format=csv` exports the same rows as CSV."""
    q = select(models.AuditEntry).order_by(models.AuditEntry.id.desc()).limit(limit)
    if since is not None:
        q = q.where(models.AuditEntry.ts >= timestamp(since))
    if actor:
        q = q.where(models.AuditEntry.actor == actor)
    if action:
        q = q.where(models.AuditEntry.action == action)
    rows = [audit_out(r) for r in s.scalars(q)]
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        fields = ["ts", "actor", "action", "target", "result", "source_ip", "detail", "id", "hash"]
        writer.writerow(fields)
        for r in rows:
            writer.writerow([getattr(r, f) for f in fields])
        return Response(buf.getvalue(), media_type="text/csv")
    return rows


@router.get("/audit/verify", response_model=AuditVerifyOut)
def verify_audit(_: Viewer, s: SessionDep) -> AuditVerifyOut:
    """Walk the hash chain from the first row; report the first broken link, or ok."""
    a = models.AuditEntry
    q = select(
        a.id,
        a.ts,
        a.actor,
        a.action,
        a.target,
        a.result,
        a.source_ip,
        a.detail,
        a.prev_hash,
        a.hash,
    ).order_by(a.id)
    rows = (row._asdict() for row in s.execute(q.execution_options(yield_per=2000)))
    count, head, broken = verify_rows(rows)
    if broken is not None:
        return AuditVerifyOut(
            ok=False, count=count, broken=AuditBreak(id=broken[0], reason=broken[1])
        )
    return AuditVerifyOut(ok=True, count=count, head=head)
