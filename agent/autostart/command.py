"""The command line a service manager uses to start this agent at boot.

It is this very agent (the frozen binary itself, or this Python with `-m agent`), with absolute
paths and the flags that matter for running: master URL, work dir, health port, CA bundle, log
level, the services' default user, log roots and download limits. Never the join token: once enrolled, the credential lives in the work dir.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from protocol.frozen import SOURCE_ROOT, is_frozen

DESCRIPTION = "GDOS agent: runs and watches the services the GDOS master places on this host"


@dataclass(frozen=True)
class AgentCommand:
    argv: list[str]  # absolute program first
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the agent


def agent_command(
    master: str,
    work_dir: Path,
    port: int | None = None,
    ca_cert: Path | None = None,
    log_level: str = "info",
    frozen: bool | None = None,
    executable: str | None = None,
    extra: list[str] | None = None,
) -> AgentCommand:
    """`extra`: further flags that matter for running (--default-user, --log-roots, ...)."""
    exe = os.path.abspath(executable or sys.executable)
    env: dict[str, str] = {}
    if is_frozen() if frozen is None else frozen:
        program = [exe]
    else:
        program = [exe, "-m", "agent"]
        # Run exactly the code that is running now, whatever the service manager's cwd.
        env = {"PYTHONPATH": str(SOURCE_ROOT), "PYTHONUNBUFFERED": "1"}
    flags = ["--master", master.rstrip("/"), "--work-dir", str(work_dir.absolute())]
    if port is not None:
        flags += ["--port", str(port)]
    if ca_cert is not None:
        flags += ["--ca-cert", str(ca_cert.absolute())]
    if log_level != "info":
        flags += ["--log-level", log_level]
    flags += extra or []
    return AgentCommand([*program, *flags], work_dir.absolute(), env)
