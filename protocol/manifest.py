"""The `service.json` manifest: model, parser, and violations reported field by field."""

import json
import posixpath
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol import jsonc

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
_DRIVE = re.compile(r"^[A-Za-z]:")


class ManifestError(ValueError):
    """service.json is unusable; `problems` lists each violation as {"field", "message"}."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))


def is_safe_relative_path(path: str) -> bool:
    """True for a relative path that stays inside its root (no `..`, no absolute, no drive)."""
    if not path or "\x00" in path:
        return False
    normal = path.replace("\\", "/")
    if normal.startswith("/") or _DRIVE.match(normal):
        return False
    return ".." not in normal.split("/")


def normalize_relative(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


class HealthCheck(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tcp: int | None = Field(default=None, ge=1, le=65535)
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)  # for tcp
    http: str | None = None
    command: list[str] | None = None
    timeout: float = Field(default=3.0, gt=0, le=300)  # one probe
    interval: float = Field(default=1.0, gt=0, le=3600)  # between probes once healthy
    # How long a batch start waits for this instance to become healthy before it gives up.
    ready_timeout: float = Field(default=60.0, gt=0, le=24 * 3600)
    # Consecutive failed probes before a healthy instance is reported unhealthy.
    failure_threshold: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> "HealthCheck":
        given = [k for k in ("tcp", "http", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of tcp, http, command")
        if self.http is not None and not self.http.startswith(("http://", "https://")):
            raise ValueError("http must be an http:// or https:// URL")
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty")
        return self


DEFAULT_LOG_MAX_BYTES = 10 << 20
DEFAULT_LOG_BACKUPS = 5


class LogRotate(BaseModel):
    """How the agent rotates this service's logs: by size, keeping `backups` older files.

    stdout and stderr are always rotated (unless max_bytes is 0); the files in `log_paths`
    only when `log_paths` is true (copytruncate, so the service may keep its file open in
    append mode)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_bytes: int = Field(default=DEFAULT_LOG_MAX_BYTES, ge=0, le=1 << 40)  # 0: never rotate
    backups: int = Field(default=DEFAULT_LOG_BACKUPS, ge=0, le=1000)
    log_paths: bool = False


def is_absolute_path(path: str) -> bool:
    normal = path.replace("\\", "/")
    return normal.startswith("/") or bool(_DRIVE.match(normal))


class Manifest(BaseModel):
    """service.json. Relative paths are relative to the package root; the service runs with the
    directory of its entrypoint as working directory (so `../conf/x` reaches `conf/x`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    os: Literal["linux", "windows", "darwin"] | None = None
    entrypoint: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    stop_entrypoint: str | None = None
    stop_args: list[str] = Field(default_factory=list)
    stop_timeout: float = Field(default=10.0, gt=0, le=3600)
    log_paths: dict[str, str] = Field(default_factory=dict)
    pid_strategy: Literal["spawn", "match"] = "spawn"
    process_name: str | None = None
    process_cmdline: str | None = None
    restart: Literal["no", "on-failure", "always"] = "no"
    # The agent gives up (state `failed`) after this many unexpected exits within the window.
    restart_limit: int = Field(default=5, ge=1, le=1000)
    restart_window: float = Field(default=60.0, gt=0, le=24 * 3600)
    health: HealthCheck | None = None
    log_rotate: LogRotate = Field(default_factory=LogRotate)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_PATTERN.match(v):
            raise ValueError("must match [A-Za-z0-9._-]+")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not NAME_PATTERN.match(v):
            raise ValueError("must match [A-Za-z0-9._-]+ (no spaces or slashes)")
        return v

    @field_validator("entrypoint", "stop_entrypoint")
    @classmethod
    def _inside(cls, v: str | None) -> str | None:
        if v is not None and not is_safe_relative_path(v):
            raise ValueError("must be a relative path inside the package")
        return None if v is None else normalize_relative(v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not key or "=" in key or "\x00" in key:
                raise ValueError(f"invalid variable name {key!r}")
        return v

    @field_validator("log_paths")
    @classmethod
    def _log_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key, path in v.items():
            if key in ("stdout", "stderr") or not key.strip() or "/" in key or "\x00" in key:
                raise ValueError(f"invalid log name {key!r}")
            if not path or "\x00" in path:
                raise ValueError(f"invalid path for {key!r}")
            if not is_absolute_path(path) and not is_safe_relative_path(path):
                raise ValueError(
                    f"path of {key!r} must be absolute or stay inside the package (no '..')"
                )
        return v

    @model_validator(mode="after")
    def _match_needs_target(self) -> "Manifest":
        if self.pid_strategy == "match" and not (self.process_name or self.process_cmdline):
            raise ValueError("pid_strategy 'match' needs process_name or process_cmdline")
        return self


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "service.json"


def manifest_from_data(data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise ManifestError([{"field": "service.json", "message": "must be a JSON object"}])
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append({"field": _loc(err["loc"]), "message": msg})
        raise ManifestError(problems) from None


def parse_manifest(text: str | bytes) -> Manifest:
    """Parse service.json text (comments and trailing commas allowed)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ManifestError(
                [{"field": "service.json", "message": "is not UTF-8 text"}]
            ) from None
    try:
        data = jsonc.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            [
                {
                    "field": "service.json",
                    "message": f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                }
            ]
        ) from None
    return manifest_from_data(data)
