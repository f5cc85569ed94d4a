"""`--autostart 1|0|-1` and `--autostart-print`: start this agent at boot, on every OS.

1 installs and enables (and starts the agent under the service manager now), 0 stops, disables
and removes, -1 (the default) leaves things as they are and just runs the agent. Each OS has a
backend (systemd, Task Scheduler, launchd) that renders its definition as text and changes the
host only through `System`, so running the same command twice changes nothing the second time.
"""

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from agent.autostart.command import AgentCommand, agent_command
from agent.autostart.system import AutostartError, RealSystem, System
from agent.flags import DEFAULT_DOWNLOAD_RETRY_SECONDS, DEFAULT_LOG_ROOTS

# The backends are imported when one is needed: every agent imports this package (for its
# command line), few ever install autostart, and launchd's plistlib and Task Scheduler's
# ElementTree (with pyexpat) would cost every running agent memory for nothing.

OS_CHOICES = ("linux", "windows", "macos")

__all__ = ["OS_CHOICES", "AutostartError", "apply", "backend_for", "print_definition"]


class Backend(Protocol):
    name: str

    @property
    def path(self) -> Path: ...
    def render(self) -> str: ...
    def preflight(self, system: System) -> None: ...
    def install(self, system: System) -> list[str]: ...
    def uninstall(self, system: System) -> list[str]: ...


def current_os() -> str:
    if sys.platform == "win32":
        return "windows"
    return "macos" if sys.platform == "darwin" else "linux"


def backend_for(
    os_key: str, command: AgentCommand, environ: Mapping[str, str] | None = None
) -> Backend:
    if os_key == "windows":
        from agent.autostart.windows import TaskScheduler

        return TaskScheduler(command)
    if os_key == "macos":
        from agent.autostart.launchd import Launchd

        return Launchd(command)
    from agent.autostart.systemd import Systemd

    return Systemd.from_env(command, dict(os.environ if environ is None else environ))


def command_from_args(args: argparse.Namespace) -> AgentCommand:
    return agent_command(
        args.master,
        Path(args.work_dir),
        port=int(args.port) if args.port is not None else None,
        ca_cert=Path(args.ca_cert) if args.ca_cert else None,
        log_level=args.log_level,
        extra=running_flags(args),
    )


def running_flags(args: argparse.Namespace) -> list[str]:
    """The flags given that change how services run: the boot-time agent keeps them."""
    flags: list[str] = []
    if getattr(args, "default_user", None):
        flags += ["--default-user", args.default_user]
    retry = getattr(args, "download_retry_seconds", None)
    if retry is not None and retry != DEFAULT_DOWNLOAD_RETRY_SECONDS:
        flags += ["--download-retry-seconds", f"{retry:g}"]
    roots = getattr(args, "log_roots", None)
    if roots is not None and tuple(roots) != DEFAULT_LOG_ROOTS:
        flags += ["--log-roots", ",".join(str(r) for r in roots)]
    return flags


def print_definition(args: argparse.Namespace, os_key: str = "auto") -> int:
    """Print the unit / task / plist this command would install, and install nothing."""
    key = current_os() if os_key == "auto" else os_key
    backend = backend_for(key, command_from_args(args))
    print(f"# {backend.name}: {backend.path}", file=sys.stderr)
    print(backend.render(), end="")
    return 0


def apply(
    args: argparse.Namespace,
    enrol: Callable[[], None],
    system: System | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """`--autostart 1` or `0`: change the host, say what was done; 2 when it cannot be done."""
    turn_on = args.autostart == "1"
    work_dir = Path(args.work_dir).absolute()
    backend = backend_for(current_os(), command_from_args(args), environ)
    verb = "on" if turn_on else "off"
    system = system or RealSystem()
    try:
        backend.preflight(system)  # rights first: never enrol a node that cannot be installed
        if turn_on:
            work_dir.mkdir(parents=True, exist_ok=True)
            from agent import credential  # its HTTP client is not needed to print a unit

            if credential.load(work_dir) is None:
                if not args.token:
                    raise AutostartError(
                        f"this node is not enrolled yet ({work_dir / credential.CREDENTIAL_FILE} "
                        "is missing): add --token <join token> to enrol it first"
                    )
                enrol()
            done = backend.install(system)
        else:
            done = backend.uninstall(system)
    except AutostartError as exc:
        print(f"gdos-agent: cannot turn autostart {verb} ({backend.name}): {exc}", file=sys.stderr)
        return 2
    if not done:
        print(f"gdos-agent: autostart is already {verb} ({backend.name}); nothing changed")
        return 0
    print(f"gdos-agent: autostart turned {verb} ({backend.name}):")
    for line in done:
        print(f"  - {line}")
    return 0
