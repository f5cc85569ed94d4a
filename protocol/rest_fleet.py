"""REST bodies of nodes, packages and resumable uploads (API.md, Nodes and Packages)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.rest_base import ErrorDetail, PatchBody


class LoadOut(BaseModel):
    cpu_percent: float = 0.0
    mem_percent: float = 0.0
    disk_percent: float = 0.0
    load1: float = 0.0


class NodeOut(BaseModel):
    id: str
    hostname: str
    ip: str
    os: str
    arch: str
    mac: str
    cpu_count: int
    mem_total: int
    disk_total: int
    status: Literal["online", "offline"]
    last_seen: str | None
    agent_version: str
    labels: dict[str, str]
    load: LoadOut
    enrolled_at: str | None = None
    # Instances the node's agent runs that the master does not know (e.g. after a restore);
    # they are kept running and only reported.
    unmanaged_instances: list[str] = Field(default_factory=list)
    # The master holding the node's connection (several masters); null while it is offline.
    master_id: str | None = None


class NodePatch(PatchBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"labels": {"rack": "r12", "tier": "web"}}]}
    )

    labels: dict[str, str]


class PackageOut(BaseModel):
    id: str
    name: str
    version: str
    description: str
    os: str | None
    sha256: str
    size: int
    uploaded_at: str
    manifest: dict[str, Any]


class UploadOut(BaseModel):
    """A resumable (tus) upload; `location` is where HEAD/PATCH/GET/DELETE go."""

    id: str
    location: str
    length: int
    offset: int
    state: Literal["receiving", "complete", "failed"]
    metadata: dict[str, str]
    created_by: str
    created_at: str
    expires_at: str
    package_id: str | None = None
    error: ErrorDetail | None = None


class MasterOut(BaseModel):
    """A master sharing the database (`GET /api/v1/masters`)."""

    id: str
    url: str
    status: Literal["online", "offline"]
    leader: bool = False  # no leader election yet: always false
    started_at: str | None
    last_seen: str | None
    nodes: int  # nodes whose connection it holds
