"""REST bodies of log-in, users, join tokens and agent enrolment (API.md, Authentication)."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.manifest import NAME_SCHEMA_PATTERN
from protocol.rest_base import JSON_NUMBER, RequestBody

Role = Literal["admin", "operator", "viewer"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


class LoginIn(RequestBody):
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


class UserIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "ops", "password": "a long passphrase", "role": "operator"}]
        }
    )

    username: str = Field(min_length=1, max_length=64, pattern=NAME_SCHEMA_PATTERN)
    password: str = Field(min_length=8, max_length=1024)
    role: Role


class JoinTokenIn(RequestBody):
    ttl_seconds: Annotated[float, Field(gt=0, le=10 * 365 * 86400), JSON_NUMBER] | None = (
        24 * 3600.0
    )
    # How many nodes may enrol with it (1: single-use); null or absent: any number until it expires.
    max_uses: Annotated[int, Field(ge=1, le=1_000_000), JSON_NUMBER] | None = None


class JoinTokenOut(BaseModel):
    id: str
    token: str
    expires_at: str | None
    max_uses: int | None = None
    uses: int = 0


class HostIn(BaseModel):
    """The host facts an agent enrols with (the same fields as the channel's HostInfo)."""

    model_config = ConfigDict(extra="ignore")

    hostname: str = Field(min_length=1, max_length=255)
    ip: str = Field(default="", max_length=64)
    os: str = Field(default="", max_length=32)
    arch: str = Field(default="", max_length=32)
    mac: str = Field(default="", max_length=32)
    cpu_count: Annotated[int, Field(ge=0, le=1 << 20), JSON_NUMBER] = 0
    mem_total: Annotated[int, Field(ge=0), JSON_NUMBER] = 0
    disk_total: Annotated[int, Field(ge=0), JSON_NUMBER] = 0
    disk_free: Annotated[int, Field(ge=0), JSON_NUMBER] = 0
    platform: str = Field(default="", max_length=255)


class EnrollIn(RequestBody):
    join_token: str = Field(min_length=1, max_length=256)
    host: HostIn


class EnrollOut(BaseModel):
    node_id: str
    node_secret: str
