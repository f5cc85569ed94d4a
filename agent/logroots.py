"""Where absolute `log_paths` may point (`--log-roots`), besides each instance's own folder.

Its own module, free of heavy imports: the agent's command line reads it before `agent.tls`
decides whether OpenSSL is loaded.
"""

import os
from pathlib import Path

DEFAULT_LOG_ROOTS: tuple[Path, ...] = () if os.name == "nt" else (Path("/var/log"),)


def parse_log_roots(text: str) -> tuple[Path, ...]:
    """`/var/log,/srv/logs` (commas or the OS path separator) as absolute folders."""
    parts = [p.strip() for p in text.replace(os.pathsep, ",").split(",")]
    roots = tuple(Path(os.path.normpath(p)) for p in parts if p)
    for root in roots:
        if not root.is_absolute():
            raise ValueError(f"--log-roots takes absolute folders, not {str(root)!r}")
    return roots
