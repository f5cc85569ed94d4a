"""Where gdosctl keeps its logins: `$XDG_CONFIG_HOME/gdos/config.yaml` (0600), named contexts.

    current: prod
    contexts:
      prod: {master: https://gdos.example:8080, username: ops, token: ..., expires_at: ...,
             ca_file: /etc/gdos/ca.pem}

`GDOS_MASTER` and `GDOS_TOKEN` (for CI) override the file; `GDOS_CA_FILE` a context's CA file.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gdosctl.errors import NOT_AUTHORISED, USAGE, CtlError

DEFAULT_MASTER = "http://127.0.0.1:8080"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gdos" / "config.yaml"


@dataclass
class Context:
    master: str
    username: str = ""
    token: str = ""
    expires_at: str = ""  # ISO 8601, from the login
    ca_file: str = ""

    def expired(self, now: float | None = None) -> bool:
        if not self.expires_at:
            return False
        try:
            ends = datetime.fromisoformat(self.expires_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return ends <= (time.time() if now is None else now)


@dataclass
class Config:
    current: str = ""
    contexts: dict[str, Context] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        path = path or config_path()
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise CtlError(f"cannot read {path}: {exc.strerror}", USAGE) from None
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise CtlError(f"{path} is not valid YAML: {exc}", USAGE) from None
        if not isinstance(data, dict):
            raise CtlError(f"{path} is not a gdosctl config file", USAGE)
        contexts = {}
        for name, raw in (data.get("contexts") or {}).items():
            if isinstance(raw, dict) and raw.get("master"):
                known = {k: str(v) for k, v in raw.items() if k in Context.__dataclass_fields__}
                contexts[str(name)] = Context(**known)
        return cls(str(data.get("current") or ""), contexts)

    def save(self, path: Path | None = None) -> Path:
        """Written whole to a temporary file (0600) and renamed: never half a file."""
        import yaml

        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data: dict[str, Any] = {
            "current": self.current,
            "contexts": {name: _compact(asdict(ctx)) for name, ctx in self.contexts.items()},
        }
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        os.chmod(tmp, 0o600)  # an older file may have been created with other bits
        os.replace(tmp, path)
        return path


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class Target:
    """The master a command talks to, and how."""

    master: str
    token: str
    ca_file: str
    context: str  # its name in the file, or "" for the environment


def context_name(url: str) -> str:
    """A context named after its master: `https://gdos.example:8443` -> `gdos.example:8443`."""
    return url.split("://", 1)[-1].rstrip("/")


def resolve_target(
    config: Config, context: str | None = None, ca_file: str | None = None, need_token: bool = True
) -> Target:
    """Which master, with which token: GDOS_MASTER/GDOS_TOKEN, else the named or current context."""
    env_master = os.environ.get("GDOS_MASTER", "").rstrip("/")
    env_token = os.environ.get("GDOS_TOKEN", "")
    ca = ca_file or os.environ.get("GDOS_CA_FILE", "")
    ctx: Context | None = None
    name = context or ""
    if context:
        ctx = config.contexts.get(context)
        if ctx is None:
            known = ", ".join(sorted(config.contexts)) or "none yet"
            raise CtlError(f"no context {context!r} (known: {known})", USAGE)
    elif env_master:
        name, ctx = next(
            ((n, c) for n, c in config.contexts.items() if c.master.rstrip("/") == env_master),
            ("", None),
        )
    elif config.current in config.contexts:
        name, ctx = config.current, config.contexts[config.current]
    master = env_master if env_master and not context else (ctx.master if ctx else "")
    if not master:
        master = DEFAULT_MASTER if not need_token else ""
    if not master:
        raise CtlError(
            "not logged in: run `gdosctl login URL` (or set GDOS_MASTER and GDOS_TOKEN)",
            NOT_AUTHORISED,
        )
    token = env_token or (ctx.token if ctx else "")
    if need_token and not token:
        raise CtlError(f"not logged in to {master}: run `gdosctl login {master}`", NOT_AUTHORISED)
    if need_token and not env_token and ctx is not None and ctx.expired():
        raise CtlError(f"your session expired; run `gdosctl login {master}`", NOT_AUTHORISED)
    return Target(master.rstrip("/"), token, ca or (ctx.ca_file if ctx else ""), name)
