"""The `service.json` manifest: model, parser, and violations reported field by field."""

import difflib
import json
import posixpath
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from protocol import jsonc, launch, pattern
from protocol.wire import FrozenStruct, describe

# A name or version: a letter or digit, then letters, digits, '.', '_' or '-' (so never an
# option-like "-x", nor "." or ".."). The whole value must match: Python's `$` also matches
# before a final newline and msgspec searches, so the Python form ends with `\Z`; JSON Schema
# and pydantic (whose `$` is the end of the text, and which has no `\Z`) use the `$` form.
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*\Z")
NAME_SCHEMA_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_RULE = "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
# A POSIX user or group name: no leading '-', at most 32 characters, an optional trailing '$'.
ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")
ACCOUNT_SCHEMA_PATTERN = "^" + ACCOUNT_PATTERN.pattern + "$"  # the same rule for JSON Schema
_DRIVE = re.compile(r"^[A-Za-z]:")
MANIFEST_FILE = "service.json"


class ManifestError(ValueError):
    """service.json is unusable; `problems` lists each violation as {"field", "message"}."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(_said(p) for p in problems))


def _said(problem: dict[str, str]) -> str:
    # "unknown field restrat (did you mean restart?)" names its field already.
    if problem["message"].startswith(UNKNOWN_FIELD):
        return problem["message"]
    return f"{problem['field']}: {problem['message']}"


def is_safe_relative_path(path: str) -> bool:
    """True for a relative path that stays inside its root (no `..`, no absolute, no drive)."""
    if not path or "\x00" in path:
        return False
    normal = path.replace("\\", "/")
    if normal.startswith("/") or _DRIVE.match(normal):
        return False
    return ".." not in normal.split("/")


def is_absolute_path(path: str) -> bool:
    normal = path.replace("\\", "/")
    return normal.startswith("/") or bool(_DRIVE.match(normal))


def normalize_relative(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


class HealthCheck(FrozenStruct, frozen=True):
    """How the agent tells an instance is healthy. `tcp` may be a string naming a variable
    ("${PORT}"), and `http`, `host` and `command` may hold `${VAR}`: the agent expands them from
    the instance's environment (protocol.expand) before it probes."""

    tcp: Annotated[int, Meta(ge=1, le=65535)] | Annotated[str, Meta(max_length=256)] | None = None
    host: Annotated[str, Meta(min_length=1, max_length=255)] = "127.0.0.1"  # for tcp
    http: str | None = None
    command: list[str] | None = None
    timeout: Annotated[float, Meta(gt=0, le=300)] = 3.0  # one probe
    interval: Annotated[float, Meta(gt=0, le=3600)] = 1.0  # between probes once healthy
    # How long a batch start waits for this instance to become healthy before it gives up.
    ready_timeout: Annotated[float, Meta(gt=0, le=24 * 3600)] = 60.0
    # Consecutive failed probes before a healthy instance is reported unhealthy.
    failure_threshold: Annotated[int, Meta(ge=1, le=100)] = 3

    def __post_init__(self) -> None:
        given = [k for k in ("tcp", "http", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of tcp, http, command")
        if isinstance(self.tcp, str):
            _port_text(self.tcp)
        if self.http is not None and not self.http.startswith(("http://", "https://", "${")):
            raise ValueError("http must be an http:// or https:// URL")
        if self.command is not None:
            try:
                launch.check_command(self.command)
            except launch.LaunchError as exc:
                where = f"command.{exc.where}" if exc.where is not None else "command"
                raise ValueError(f"{where}: {exc}") from None


# A port given as text: 1-65535 in digits, or text naming a variable ("${PORT}"; `$${X}` is a
# literal, no variable). Also JSON Schema's pattern, so `.` is spelled as ECMAScript reads it.
_LINE_CHAR = "[^\\n\\r\u2028\u2029]"
PORT_TEXT_PATTERN = (
    "^(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
    f"|(?:{_LINE_CHAR}*[^$\\n\\r\u2028\u2029])?\\$\\{{[A-Za-z_][A-Za-z0-9_]*\\}}{_LINE_CHAR}*)$"
)
_PORT_TEXT = re.compile(PORT_TEXT_PATTERN.removeprefix("^").removesuffix("$"))


def _port_text(text: str) -> None:
    if not _PORT_TEXT.fullmatch(text):
        raise ValueError(
            f'tcp must be a port (1-65535) or name a variable like "${{PORT}}", not {text[:40]!r}'
        )


def port_of(value: int | str) -> int:
    """The port a probe connects to, once `${VAR}` is expanded; ValueError when it is none."""
    if isinstance(value, int):
        return value
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"the health check's tcp port is {value[:40]!r}, not a port (1-65535)")
    return int(value)


DEFAULT_LOG_MAX_BYTES = 10 << 20
DEFAULT_LOG_BACKUPS = 5


class LogRotate(FrozenStruct, frozen=True):
    """How the agent rotates this service's logs: by size, keeping `backups` older files.

    stdout and stderr are always rotated (unless max_bytes is 0); the files in `log_paths`
    only when `log_paths` is true (copytruncate, so the service may keep its file open in
    append mode)."""

    max_bytes: Annotated[int, Meta(ge=0, le=1 << 40)] = DEFAULT_LOG_MAX_BYTES  # 0: never rotate
    backups: Annotated[int, Meta(ge=0, le=1000)] = DEFAULT_LOG_BACKUPS
    log_paths: bool = False


_Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=NAME_PATTERN.pattern)]
_Version = Annotated[str, Meta(min_length=1, max_length=64, pattern=NAME_PATTERN.pattern)]


def _inside(value: str | None) -> None:
    if value is not None and not is_safe_relative_path(value):
        raise ValueError("must be a relative path inside the package")


def _log_paths(paths: dict[str, str]) -> None:
    for key, path in paths.items():
        if key in ("stdout", "stderr") or not key.strip() or "/" in key or "\x00" in key:
            raise ValueError(f"invalid log name {key!r}")
        if not path or "\x00" in path:
            raise ValueError(f"invalid path for {key!r}")
        if not is_absolute_path(path) and not is_safe_relative_path(path):
            raise ValueError(
                f"path of {key!r} must be absolute or stay inside the package (no '..')"
            )


def _shared_paths(paths: list[str]) -> None:
    seen: list[str] = []
    for raw in paths:
        if not is_safe_relative_path(raw):
            raise ValueError(f"{raw[:80]!r} must be a relative path inside the package (no '..')")
        path = normalize_relative(raw)
        if path in (".", "") or path == MANIFEST_FILE:
            raise ValueError(f"{raw[:80]!r} cannot be shared: name a file or folder inside it")
        for other in seen:
            if _overlaps(path, other):
                raise ValueError(f"{raw[:80]!r} overlaps {other!r}: share one or the other")
        seen.append(path)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def shared_path_name(raw: str) -> tuple[str, bool]:
    """A shared path normalised, and whether it is a folder (written with a trailing '/')."""
    return normalize_relative(raw), raw.replace("\\", "/").endswith("/")


def check_account(value: str | None) -> None:
    """A user or group name as the node's account database spells it."""
    if value is not None and ACCOUNT_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"{value[:40]!r} is not a user or group name (letters, digits, '_', '.', '-'; "
            "at most 32 characters, not starting with '-')"
        )


def _cmdline_pattern(value: str | None) -> None:
    if value is not None:
        pattern.check(value)  # PatternError is a ValueError with a sentence


# Checks beyond types and ranges, by field: each raises ValueError with a sentence.
_FIELD_CHECKS: dict[str, Callable[[Any], None]] = {
    "entrypoint": _inside,
    "stop_entrypoint": _inside,
    "env": launch.check_env,
    "args": launch.check_args,
    "stop_args": launch.check_args,
    "shared_paths": _shared_paths,
    "log_paths": _log_paths,
    "process_cmdline": _cmdline_pattern,
    "user": check_account,
    "group": check_account,
}


class Manifest(FrozenStruct, frozen=True):
    """service.json. Relative paths are relative to the package root; the service runs with the
    directory of its entrypoint as working directory (so `../conf/x` reaches `conf/x`)."""

    name: _Name
    version: _Version
    entrypoint: Annotated[str, Meta(min_length=1)]
    description: str = ""
    os: Literal["linux", "windows", "darwin"] | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    stop_entrypoint: str | None = None
    stop_args: list[str] = []
    stop_timeout: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    log_paths: dict[str, str] = {}
    pid_strategy: Literal["spawn", "match"] = "spawn"
    process_name: str | None = None
    process_cmdline: str | None = None
    restart: Literal["no", "on-failure", "always"] = "no"
    # The agent gives up (state `failed`) after this many unexpected exits within the window.
    restart_limit: Annotated[int, Meta(ge=1, le=1000)] = 5
    restart_window: Annotated[float, Meta(gt=0, le=24 * 3600)] = 60.0
    health: HealthCheck | None = None
    log_rotate: LogRotate = msgspec.field(default_factory=LogRotate)
    # Who the service runs as on the node (None: the agent's --default-user); `group` defaults
    # to the user's primary group.
    user: str | None = None
    group: str | None = None
    # Releases: how many unpacked versions the agent keeps beside each other (the current and
    # the previous one are always kept), and files or folders ("uploads/") kept outside every
    # release and linked into each one.
    keep_releases: Annotated[int, Meta(ge=1, le=100)] = 3
    shared_paths: list[str] = []

    def __post_init__(self) -> None:
        for field, check in _FIELD_CHECKS.items():
            check(getattr(self, field))
        launch.check_total(self.env, self.args)
        for field in ("entrypoint", "stop_entrypoint"):
            value = getattr(self, field)
            if value is not None:
                msgspec.structs.force_setattr(self, field, normalize_relative(value))
        if self.pid_strategy == "match" and not (self.process_name or self.process_cmdline):
            raise ValueError("pid_strategy 'match' needs process_name or process_cmdline")
        for raw in self.shared_paths:
            shared, _ = shared_path_name(raw)
            for field in ("entrypoint", "stop_entrypoint"):
                value = getattr(self, field)
                if value is not None and _overlaps(shared, value):
                    raise ValueError(f"shared_paths: {raw!r} would replace the {field} {value!r}")


def _field_problems(data: dict[str, Any]) -> list[dict[str, str]]:
    """Every field checked on its own, so that all violations are reported at once."""
    problems: list[dict[str, str]] = []
    for field in msgspec.structs.fields(Manifest):
        if field.encode_name not in data:
            if field.required:
                problems.append({"field": field.name, "message": "is required"})
            continue
        try:
            value = msgspec.convert(data[field.encode_name], field.type)
            check = _FIELD_CHECKS.get(field.name)
            if check is not None:
                check(value)
        except msgspec.ValidationError as exc:
            path, message = describe(exc)
            if path.startswith("[...]"):  # msgspec does not name the dict key: find it
                path = _bad_key(data[field.encode_name], field.type) or path
            choices = _choices(field.type)
            if choices and message.startswith("Invalid enum value"):
                message = f"must be one of {', '.join(choices)}"
            if field.name in ("name", "version") and "matching regex" in message:
                message = NAME_RULE
            problems.append(
                {"field": ".".join(p for p in (field.name, path) if p), "message": message}
            )
        except launch.LaunchError as exc:
            where = f"{field.name}.{exc.where}" if exc.where is not None else field.name
            problems.append({"field": where, "message": str(exc)})
        except ValueError as exc:
            problems.append({"field": field.name, "message": str(exc)})
    if not problems:
        try:
            launch.check_total(data.get("env"), data.get("args"))
        except launch.LaunchError as exc:
            problems.append({"field": exc.where or "service.json", "message": str(exc)})
    return problems


def _choices(field_type: Any) -> list[str]:
    """The allowed words of a Literal field (also inside `X | None`)."""
    for arg in (field_type, *typing.get_args(field_type)):
        if typing.get_origin(arg) is Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def _bad_key(value: Any, field_type: Any) -> str | None:
    """The first key of a mapping whose value does not convert to the mapping's value type."""
    args = typing.get_args(field_type)
    if not isinstance(value, dict) or len(args) != 2:
        return None
    for key, item in value.items():
        try:
            msgspec.convert(item, args[1])
        except msgspec.ValidationError:
            return str(key)
    return None


UNKNOWN_FIELD = "unknown field "


def unknown_fields(
    data: dict[str, Any], struct: Any = None, prefix: str = ""
) -> list[dict[str, str]]:
    """Keys no field of service.json (or of its `health` and `log_rotate` objects) has: a typo
    such as `restrat` would otherwise leave the service without the setting it meant."""
    struct = struct or Manifest
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    problems: list[dict[str, str]] = []
    for key, value in data.items():
        path = prefix + str(key)
        field = fields.get(key)
        if field is None:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append({"field": path, "message": f"{UNKNOWN_FIELD}{path}{hint}"})
            continue
        inner = _struct_of(field.type)
        if inner is not None and isinstance(value, dict):
            problems += unknown_fields(value, inner, path + ".")
    return problems


def _struct_of(field_type: Any) -> Any:
    """The Struct type of a field (also inside `X | None`), else None."""
    for arg in (field_type, *typing.get_args(field_type)):
        if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
            return arg
    return None


def manifest_from_data(data: Any, strict: bool = False) -> Manifest:
    """`strict` also refuses unknown keys: the master does, on upload; an agent reading a
    package it was sent does not, so a newer master's fields never stop an older agent."""
    if not isinstance(data, dict):
        raise ManifestError([{"field": "service.json", "message": "must be a JSON object"}])
    problems = (unknown_fields(data) if strict else []) + _field_problems(data)
    if problems:
        raise ManifestError(problems)
    try:
        return msgspec.convert(data, Manifest)
    except msgspec.ValidationError as exc:  # a rule across fields (pid_strategy, ...)
        path, message = describe(exc)
        raise ManifestError([{"field": path or "service.json", "message": message}]) from None


def parse_manifest(text: str | bytes, strict: bool = False) -> Manifest:
    """Parse service.json text (comments and trailing commas allowed); `strict`: see
    `manifest_from_data`."""
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
    return manifest_from_data(data, strict)
