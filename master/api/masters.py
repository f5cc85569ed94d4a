"""The masters sharing this database (several masters on PostgreSQL; one on SQLite)."""

from typing import Any

from fastapi import APIRouter

from master.api.deps import ServicesDep, Viewer
from master.api.errors import ERROR_RESPONSES
from protocol.rest import MasterOut

router = APIRouter(prefix="/api/v1/masters", tags=["masters"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[MasterOut])
def list_masters(_: Viewer, svc: ServicesDep) -> list[dict[str, Any]]:
    """Every master that ever registered, this one first; `leader` marks the one whose lease
    session holds the leader lock (on SQLite the single master)."""
    return svc.masters.listing()
