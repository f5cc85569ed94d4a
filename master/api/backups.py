"""Backups of the master's database: make, list, download, delete, restore (SQLite only)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse

from master.api.deps import Admin, Operator, Principal, ServicesDep, Viewer, authenticated
from master.api.errors import ERROR_RESPONSES
from master.services import restore as restore_service
from protocol.errors import ErrorCode, GdosError
from protocol.rest import ROLE_RANK
from protocol.rest_records import BackupOut, RestoreOut

router = APIRouter(prefix="/api/v1/backups", tags=["backups"], responses=ERROR_RESPONSES)
BackupId = Annotated[str, Path(max_length=64)]


@router.post("", response_model=BackupOut, status_code=201)
async def create_backup(principal: Operator, request: Request, svc: ServicesDep) -> BackupOut:
    """An online, consistent snapshot (writes go on meanwhile) that passed integrity_check.
    On PostgreSQL: 501, use pg_dump."""
    out = await svc.backups.create("manual", principal.name)
    request.state.audit_target = f"backup={out.id}"
    request.state.audit_detail = {"size": out.size, "sha256": out.sha256}
    return out


@router.get("", response_model=list[BackupOut])
def list_backups(_: Viewer, svc: ServicesDep) -> list[BackupOut]:
    """Newest first."""
    svc.backups.live_file()  # 501 on PostgreSQL
    return svc.backups.entries()


@router.get(
    "/{backup_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/vnd.sqlite3": {}}}},
)
def download_backup(backup_id: BackupId, _: Admin, svc: ServicesDep) -> FileResponse:
    """The SQLite file (admin only: it holds password and credential hashes)."""
    path = svc.backups.path_of(backup_id)
    return FileResponse(
        path, media_type="application/vnd.sqlite3", filename=f"gdos-backup-{backup_id}.db"
    )


@router.delete("/{backup_id}", status_code=204, response_class=Response)
def delete_backup(backup_id: BackupId, _: Admin, svc: ServicesDep) -> Response:
    svc.backups.delete(backup_id)
    return Response(status_code=204)


def admin_without_session(request: Request, svc: ServicesDep) -> Principal:
    """Like `Admin`, but closes its session at once: a restore replaces the database file, and
    no connection to the old one may stay open across that."""
    with svc.db.session() as s:
        principal = authenticated(request, s)
    if principal.is_node or ROLE_RANK.get(principal.role, -1) < ROLE_RANK["admin"]:
        raise GdosError(
            ErrorCode.FORBIDDEN,
            f"restoring a backup needs the admin role; you are {principal.role or 'an agent'}",
            {"required_role": "admin"},
        )
    return principal


@router.post("/{backup_id}/restore", response_model=RestoreOut)
async def restore_backup(
    backup_id: BackupId,
    principal: Annotated[Principal, Depends(admin_without_session)],
    request: Request,
    svc: ServicesDep,
) -> RestoreOut:
    """Replace the master's state with this backup, without a restart. The state just before
    is kept as a `pre-restore` backup; agents reconnect and reconcile; instances a node runs
    that the backup does not know keep running and are listed on the node as
    `unmanaged_instances`."""
    request.state.audit_target = f"backup={backup_id}"
    out = await restore_service.restore_backup(svc, backup_id, principal.name)
    request.state.audit_detail = {
        "safety_backup": out.safety_backup,
        "schema_revision": out.schema_revision,
    }
    return out
