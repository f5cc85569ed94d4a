"""macOS: a launchd daemon in /Library/LaunchDaemons, loaded at boot and kept alive."""

import plistlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.autostart.command import AgentCommand
from agent.autostart.system import AutostartError, System, run_checked

LABEL = "com.gdos.agent"
PLIST_DIR = Path("/Library/LaunchDaemons")
THROTTLE_SEC = 5  # launchd's RestartSec: the least time between two starts


def plist_data(command: AgentCommand) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Label": LABEL,
        "ProgramArguments": command.argv,
        "WorkingDirectory": str(command.work_dir),
        "RunAtLoad": True,
        # Restart after a crash or a failed exit; a clean stop (SIGTERM, exit 0) stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_SEC,
        # launchd kills a job's process group when the job ends unless told not to; services run
        # in their own sessions already, and must outlive the agent by design.
        "AbandonProcessGroup": True,
        "StandardOutPath": str(command.work_dir / "agent.log"),
        "StandardErrorPath": str(command.work_dir / "agent.log"),
    }
    if command.env:
        data["EnvironmentVariables"] = dict(command.env)
    return data


@dataclass
class Launchd:
    command: AgentCommand
    plist_dir: Path = PLIST_DIR
    launchctl: str | None = None

    name = "launchd"

    @property
    def path(self) -> Path:
        return self.plist_dir / f"{LABEL}.plist"

    def render(self) -> str:
        return plistlib.dumps(plist_data(self.command)).decode()

    def _tool(self, system: System) -> str:
        tool = self.launchctl or system.which("launchctl")
        if tool is None:
            raise AutostartError("launchctl was not found: on macOS autostart needs launchd")
        if not system.is_admin():
            raise AutostartError(
                f"writing {self.path} (a daemon that runs at boot) needs root: "
                "run the same command with sudo"
            )
        return tool

    def preflight(self, system: System) -> None:
        self._tool(system)

    def install(self, system: System) -> list[str]:
        tool = self._tool(system)
        data = self.render().encode()
        current = system.read(self.path)
        loaded = system.run([tool, "print", f"system/{LABEL}"]).returncode == 0
        done: list[str] = []
        if current != data:
            system.write(self.path, data)
            done.append(f"{'wrote' if current is None else 'updated'} {self.path}")
            if loaded:
                run_checked(system, [tool, "bootout", f"system/{LABEL}"])
                done.append(f"unloaded the old {LABEL} (services keep running)")
                loaded = False
        if not loaded:
            run_checked(system, [tool, "enable", f"system/{LABEL}"])
            run_checked(system, [tool, "bootstrap", "system", str(self.path)])
            done.append(f"loaded {LABEL}: the agent runs now and at every boot")
        return done

    def uninstall(self, system: System) -> list[str]:
        tool = self._tool(system)
        done: list[str] = []
        if system.run([tool, "print", f"system/{LABEL}"]).returncode == 0:
            run_checked(system, [tool, "bootout", f"system/{LABEL}"])
            done.append(f"stopped and unloaded {LABEL} (the services it started keep running)")
        if system.remove(self.path):
            done.append(f"removed {self.path}")
        return done
