"""Defaults of the agent's flags that its parts share with its command line (and autostart).

Free of heavy imports: the command line reads it before `agent.tls` decides whether OpenSSL
is loaded.
"""

import os
from pathlib import Path

# Where absolute `log_paths` may point (`--log-roots`), besides each instance's own folder.
DEFAULT_LOG_ROOTS: tuple[Path, ...] = () if os.name == "nt" else (Path("/var/log"),)
# How long a package download keeps retrying (`--download-retry-seconds`).
DEFAULT_DOWNLOAD_RETRY_SECONDS = 300.0


def parse_log_roots(text: str) -> tuple[Path, ...]:
    """`/var/log,/srv/logs` (commas or the OS path separator) as absolute folders."""
    parts = [p.strip() for p in text.replace(os.pathsep, ",").split(",")]
    roots = tuple(Path(os.path.normpath(p)) for p in parts if p)
    for root in roots:
        if not root.is_absolute():
            raise ValueError(f"--log-roots takes absolute folders, not {str(root)!r}")
    return roots


def parse_masters(text: str) -> tuple[str, ...]:
    """`http://a:8080,http://b:8080` (or one URL) as the master URLs in order, without a
    trailing slash; empty entries are skipped."""
    return tuple(u.strip().rstrip("/") for u in text.split(",") if u.strip())
