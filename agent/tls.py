"""OpenSSL only in an agent that needs it: loading it costs several MiB on every host.

An agent whose master is `http://`, with no CA bundle, starts with `ssl`, `_ssl` and `_hashlib`
blocked (`forgo`); the stdlib runs without them (hashlib falls back to Python's own sha256). The
first `https://` URL it meets (a probe, a package on an https store) loads `ssl` (`load`), used
through `agent.http.HttpsHandler`. This module imports nothing that imports ssl: it runs first.
"""

import importlib
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

_SSL = ("ssl", "_ssl")
_OPENSSL = (*_SSL, "_hashlib")


def needed(master_url: str, ca_cert: Path | None) -> bool:
    """Does the link to the master itself use TLS (any of them, for a comma-separated list)?"""
    urls = master_url.lower().split(",")
    return any(u.strip().startswith("https://") for u in urls) or ca_cert is not None


def forgo() -> bool:
    """Block OpenSSL's modules for imports to come; False if some are already loaded."""
    if any(name in sys.modules for name in _OPENSSL):
        return False
    for name in _OPENSSL:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not here"
    return True


_loading = threading.Lock()  # the first https probes can come from several threads at once


def load() -> ModuleType:
    """The `ssl` module, imported now if `forgo` kept it out (libcrypto comes with it)."""
    with _loading:
        for name in _SSL:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
        return importlib.import_module("ssl")


def verifying(ca_cert: Path | None = None) -> "ssl.SSLContext":
    """A context that verifies certificates: against `ca_cert`, else the system's CAs."""
    ctx: ssl.SSLContext = load().create_default_context(cafile=str(ca_cert) if ca_cert else None)
    return ctx


def context(ca_cert: Path | None) -> "ssl.SSLContext | None":
    """For the master's link: None (and no OpenSSL) unless a CA bundle was given."""
    return verifying(ca_cert) if ca_cert else None


def unverified() -> "ssl.SSLContext":
    """For health probes: internal endpoints often use self-signed certificates."""
    mod = load()
    ctx: ssl.SSLContext = mod.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = mod.CERT_NONE
    return ctx
