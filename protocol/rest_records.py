"""REST bodies of the records the master keeps of what happened: audit, backups, logs."""

from typing import Any, Literal

from pydantic import BaseModel


class AuditOut(BaseModel):
    ts: str
    actor: str
    action: str
    target: str
    result: str
    source_ip: str
    detail: dict[str, Any]
    id: int | None = None  # the row's place in the hash chain (GET /audit/verify names it)
    hash: str = ""


class AuditBreak(BaseModel):
    id: int
    reason: str


class AuditVerifyOut(BaseModel):
    """`ok` with the number of rows checked and the newest hash (record it elsewhere to also
    detect rows cut from the end), or the first broken link."""

    ok: bool
    count: int
    head: str | None = None
    broken: AuditBreak | None = None


BackupKind = Literal["manual", "scheduled", "pre-restore"]


class BackupOut(BaseModel):
    id: str
    size: int
    created_at: str
    kind: BackupKind = "manual"
    sha256: str = ""
    created_by: str = ""
    schema_revision: str = ""


class RestoreOut(BaseModel):
    restored: str  # the backup id
    safety_backup: str  # the state just before the restore, itself a backup
    schema_revision: str
    restored_at: str


class LogFileOut(BaseModel):
    name: str
    path: str
    size: int
    exists: bool = True
    error: str | None = None  # why the agent refuses to read it (e.g. swapped for a symlink)
