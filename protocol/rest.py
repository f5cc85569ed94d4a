"""REST request and response bodies (API.md). FastAPI renders these into /openapi.json, and the
console's client parses responses with the same classes."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from protocol.manifest import NAME_PATTERN
from protocol.messages import HostInfo

Role = Literal["admin", "operator", "viewer"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _json_number(value: Any) -> Any:
    # JSON Schema's integer admits 58.0 but no number admits `true` or "58".
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# Constraints go before this in Annotated[...], or the OpenAPI schema loses them.
JSON_NUMBER = BeforeValidator(_json_number)
StartOrder = Annotated[int, Field(ge=0, le=10_000), JSON_NUMBER]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    status: str
    version: str


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: str
    username: str
    role: Role
    created_at: str | None = None


class LoginOut(BaseModel):
    token: str
    expires_at: str
    user: UserOut


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN.pattern)
    password: str = Field(min_length=8, max_length=1024)
    role: Role


class JoinTokenIn(_In):
    ttl_seconds: Annotated[float, Field(gt=0, le=10 * 365 * 86400), JSON_NUMBER] | None = (
        24 * 3600.0
    )


class JoinTokenOut(BaseModel):
    id: str
    token: str
    expires_at: str | None


class EnrollIn(_In):
    join_token: str = Field(min_length=1, max_length=256)
    host: HostInfo


class EnrollOut(BaseModel):
    node_id: str
    node_secret: str


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


class NodePatch(_In):
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


class SystemIn(_In):
    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN.pattern)
    description: str = Field(default="", max_length=4096)


class SystemPatch(_In):
    description: str = Field(max_length=4096)


class ModuleIn(_In):
    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN.pattern)
    package: str = Field(min_length=1, max_length=128)
    version: str | None = None
    start_order: StartOrder = 1
    env: dict[str, str] = Field(default_factory=dict)
    args: list[str] | None = None


class ModulePatch(_In):
    version: str | None = None
    start_order: StartOrder | None = None
    env: dict[str, str] | None = None
    args: list[str] | None = None


class ModuleOut(BaseModel):
    id: str
    system_id: str
    name: str
    package: str
    version: str | None
    start_order: int
    env: dict[str, str]
    args: list[str] | None


class InstanceCreate(_In):
    module_id: str = Field(min_length=1, max_length=64)
    node_id: str = Field(min_length=1, max_length=64)


class InstanceOut(BaseModel):
    id: str
    system_id: str
    module_id: str | None
    node_id: str
    name: str
    state: str
    desired_state: str
    health: str
    pid: int | None
    started_at: str | None
    restarts: int
    exit_code: int | None
    last_error: str | None
    adopted: bool
    version: str | None


class SystemOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: str | None


class SystemDetail(SystemOut):
    modules: list[ModuleOut]
    instances: list[InstanceOut]


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
