"""REST bodies of releases: per-instance settings, upgrades, rollouts, rollbacks and their history
(API.md, "Releases")."""

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from protocol.manifest import ACCOUNT_SCHEMA_PATTERN, check_account
from protocol.rest_base import JSON_NUMBER, NullMeans, PatchBody, RequestBody
from protocol.rest_launch import ArgList, EnvMap, LaunchSettings
from protocol.rest_systems import ModuleOut

_PERCENT = re.compile(r"\A([1-9][0-9]?|100)%\Z")

# A count of instances, or a share of them ("25%": rounded up, at least one).
BatchSize = (
    Annotated[int, Field(ge=1, le=100_000), JSON_NUMBER]
    | Annotated[
        str,
        Field(pattern=r"^([1-9][0-9]?|100)%$", description='a share of the instances, e.g. "25%"'),
    ]
)
Seconds = Annotated[float, Field(ge=0, le=24 * 3600), JSON_NUMBER]
ReadyTimeout = Annotated[float, Field(gt=0, le=24 * 3600), JSON_NUMBER]


def batch_count(size: int | str, total: int) -> int:
    """How many instances one batch takes out of `total`."""
    if isinstance(size, int):
        return max(1, size)
    match = _PERCENT.match(size)
    assert match is not None, "validated by BatchSize"
    return max(1, -(-total * int(match.group(1)) // 100))


class InstanceSettings(BaseModel):
    """An instance's own settings over its module's: its env entries (over the module's), its
    args (null: the module's, then the package's) and the account it runs as (null: the
    package's `user`, then the agent's --default-user)."""

    env: dict[str, str] = Field(default_factory=dict)
    args: list[str] | None = None
    user: str | None = None


class InstancePatch(PatchBody, LaunchSettings):
    """`PATCH /instances/{id}`: only the fields given change; applied at the next start."""

    env: Annotated[EnvMap | None, NullMeans("no entries of its own")] = None
    args: Annotated[ArgList | None, NullMeans("the module's args")] = None
    user: Annotated[str | None, NullMeans("the package's user, then the agent's default")] = Field(
        default=None, max_length=33, json_schema_extra={"pattern": ACCOUNT_SCHEMA_PATTERN}
    )

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        check_account(value)
        return value


class UpgradeIn(RequestBody):
    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the package version to run; null: the module's (its version, or the newest)",
    )


class RolloutSettings(RequestBody):
    """How instances move to a version, batch after batch, gated on health."""

    batch_size: BatchSize = 1
    ready_timeout: ReadyTimeout | None = Field(
        default=None,
        description="seconds each instance may take to be ready (default: its check's)",
    )
    min_ready_seconds: Seconds = Field(
        default=5.0, description="an instance without a health check must stay up this long"
    )
    pause_seconds: Seconds = Field(default=0.0, description="between two batches")
    canary: Annotated[int, Field(ge=0, le=100_000), JSON_NUMBER] = Field(
        default=0, description="pause after this many instances until resumed (0: no pause)"
    )
    auto_rollback: StrictBool = True  # lax bool would take 1, "yes" and "0"


class RolloutIn(RolloutSettings):
    version: str | None = Field(
        default=None, min_length=1, max_length=64, description="null: the newest upload"
    )


class RollbackIn(RequestBody):
    """Back to a kept release: by default the version before the module's last rollout, all
    instances at once (each still gated on health), without rolling the rollback back."""

    version: str | None = Field(
        default=None, min_length=1, max_length=64, description="null: the previous version"
    )
    batch_size: BatchSize = "100%"
    ready_timeout: ReadyTimeout | None = None
    min_ready_seconds: Seconds = 5.0
    pause_seconds: Seconds = 0.0
    auto_rollback: StrictBool = False


class SystemRolloutIn(RolloutSettings):
    """Several modules of a system as one operation, level by level (ascending start_order)."""

    versions: dict[
        Annotated[str, Field(min_length=1, max_length=128)],
        Annotated[str, Field(min_length=1, max_length=64)] | None,
    ] = Field(min_length=1, description='{"<module name>": "1.0.1" | null (the newest)}')


class ModuleChanged(ModuleOut):
    """A module after `PATCH`: `drifted` lists the instances that now differ from it (they show
    `drift: true` until upgraded, or, for env and args, restarted)."""

    drifted: list[str] = Field(default_factory=list)


class ReleaseInstance(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    instance_id: str
    name: str = ""
    node_id: str = ""
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    state: str
    error: str | None = None


class ReleaseOut(BaseModel):
    """One rollout or rollback of a module, as `GET /modules/{id}/releases` lists it."""

    operation_id: str
    kind: str
    module_id: str
    from_version: str | None
    to_version: str | None
    actor: str
    started_at: str | None
    finished_at: str | None
    state: str
    error: str | None = None
    instances: list[ReleaseInstance]


class RolloutOut(BaseModel):
    """An operation's rollout settings and where it stands (rollouts and rollbacks only)."""

    modules: dict[str, dict[str, Any]]  # module id -> {"name", "from", "to"}
    batch_size: int | str
    canary: int
    auto_rollback: bool
    min_ready_seconds: float
    pause_seconds: float
    phase: str  # preparing | rolling | paused | rolling_back | done
    batch: int | None = None  # the batch being worked on (1, 2, ...)
    batches: int | None = None
