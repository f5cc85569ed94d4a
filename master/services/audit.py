"""The audit trail: one row for every state-changing call and every login, failed ones too.

Rows link by hash (master/services/audit_chain.py). `master/api/middleware.py` writes the row
of every POST/PUT/PATCH/DELETE under /api/v1; routes enrich it through `request.state`
(`audit_target`, `audit_detail`, `actor`).
"""

import threading
import time
from typing import Any

from sqlalchemy import select, text

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.audit_chain import GENESIS, normalize_detail, row_hash
from protocol.rest import AuditOut, iso

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1"

# WebSocket routes carry no operator action of their own, so they write no audit row. A new
# socket must be added here on purpose (tests/master/test_audit_routes.py fails otherwise).
UNAUDITED_SOCKETS = {
    "/api/v1/events": "read-only stream of state changes to the console",
    "/api/v1/agent/ws": "the agent's channel: agents report facts; the commands sent down it "
    "come from REST calls, which are audited",
}

# One writer at a time, so every row links to the one written just before it.
_chain_lock = threading.Lock()
_PG_CHAIN_LOCK_KEY = 0x6764_6F73_0005  # pg_advisory_xact_lock: one writer across replicas


def audit_out(row: models.AuditEntry) -> AuditOut:
    return AuditOut(
        ts=iso(row.ts) or "",
        actor=row.actor,
        action=row.action,
        target=row.target,
        result=row.result,
        source_ip=row.source_ip,
        detail=row.detail or {},
        id=row.id,
        hash=row.hash,
    )


def record(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str = "",
    result: str = "ok",
    source_ip: str = "",
    detail: dict[str, Any] | None = None,
    hub: Hub | None = None,
) -> None:
    """Append one row to the chain; with `hub` (on the event loop's thread), tell the console
    event stream too (topic `audit`)."""
    fields: dict[str, Any] = {
        "ts": time.time(),
        "actor": actor[:64],
        "action": action[:64],
        "target": target[:255],
        "result": result[:32],
        "source_ip": source_ip[:64],
        "detail": normalize_detail(detail),
    }
    with _chain_lock, db.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK_KEY})
        last = s.execute(
            select(models.AuditEntry.id, models.AuditEntry.hash)
            .order_by(models.AuditEntry.id.desc())
            .limit(1)
        ).first()
        prev_id, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
        fields["id"] = prev_id + 1
        entry = models.AuditEntry(**fields, prev_hash=prev_hash, hash=row_hash(prev_hash, fields))
        s.add(entry)
        s.commit()
    if hub is not None:
        hub.publish("audit", audit_out(entry).model_dump())


def result_word(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return f"error_{status}"
