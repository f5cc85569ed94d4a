"""Linux: a systemd unit in /etc/systemd/system, enabled for boot and started now."""

from dataclasses import dataclass
from pathlib import Path

from agent.autostart.command import DESCRIPTION, AgentCommand
from agent.autostart.system import AutostartError, System, run_checked

UNIT = "gdos-agent.service"
UNIT_DIR = Path("/etc/systemd/system")
BOOTED_MARKER = Path("/run/systemd/system")  # exists iff PID 1 is systemd (sd_booted())
RESTART_SEC = 5
# Tests point these at a temporary directory and a fake systemctl; nothing else should.
ENV_UNIT_DIR = "GDOS_AGENT_SYSTEMD_DIR"
ENV_SYSTEMCTL = "GDOS_AGENT_SYSTEMCTL"


def quote(arg: str) -> str:
    """One ExecStart= word: `%` and `$` are systemd's specifier and variable signs, so doubled."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env_assignment(name: str, value: str) -> str:
    pair = f"{name}={value}".replace("%", "%%")
    return '"' + pair.replace("\\", "\\\\").replace('"', '\\"') + '"'


AUTOSTART_ORIGIN = (
    "Written by `gdos-agent --autostart 1`; remove it with `gdos-agent --autostart 0`."
)


def unit_text(
    command: AgentCommand, origin: str = AUTOSTART_ORIGIN, environment_file: Path | None = None
) -> str:
    """The unit; `environment_file` (optional, `-` prefixed) sets flags as GDOS_AGENT_* lines,
    as the Debian package's unit does with /etc/default/gdos-agent."""
    env_lines = "".join(
        f"Environment={_env_assignment(k, v)}\n" for k, v in sorted(command.env.items())
    )
    if environment_file is not None:
        env_lines += f"EnvironmentFile=-{environment_file}\n"
    return f"""\
# {origin}
[Unit]
Description={DESCRIPTION}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={" ".join(quote(a) for a in command.argv)}
WorkingDirectory={str(command.work_dir).replace("%", "%%")}
{env_lines}Restart=on-failure
RestartSec={RESTART_SEC}
# Exit code 2 means "not enrolled", "refused by the master" or "its state cannot be read":
# restarting will not help.
RestartPreventExitStatus=2
# KillMode=process: stopping or restarting this unit stops the agent process only. The services
# it started are its descendants, so they live in this unit's control group, in their own
# sessions; by design they outlive the agent, and the next agent re-adopts them by PID and
# start time. The default, control-group, would kill every service on each `systemctl stop`,
# `restart` or agent upgrade; `mixed` would SIGKILL them once the agent has gone.
KillMode=process
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
"""


@dataclass
class Systemd:
    command: AgentCommand
    unit_dir: Path = UNIT_DIR
    systemctl: str | None = None  # None: find it on PATH
    check_host: bool = True  # PID 1 is systemd and we are root (off only with the test overrides)

    name = "systemd"

    @classmethod
    def from_env(cls, command: AgentCommand, environ: dict[str, str]) -> "Systemd":
        unit_dir, systemctl = environ.get(ENV_UNIT_DIR), environ.get(ENV_SYSTEMCTL)
        return cls(
            command,
            Path(unit_dir) if unit_dir else UNIT_DIR,
            systemctl or None,
            check_host=not (unit_dir or systemctl),
        )

    @property
    def path(self) -> Path:
        return self.unit_dir / UNIT

    def render(self) -> str:
        return unit_text(self.command)

    def _ctl(self, system: System) -> str:
        ctl = self.systemctl or system.which("systemctl")
        if ctl is None:
            raise AutostartError(
                "systemctl was not found: on Linux autostart needs systemd "
                "(`--autostart-print` shows the unit to adapt for another init system)"
            )
        if self.check_host and not system.exists(BOOTED_MARKER):
            raise AutostartError(
                f"systemd is not running as PID 1 on this host ({BOOTED_MARKER} is missing), "
                "so no unit can be enabled here: start the agent from this host's init system"
            )
        if self.check_host and not system.is_admin():
            raise AutostartError(
                f"writing {self.path} and enabling it needs root: run the same command with sudo"
            )
        if not system.writable(self.unit_dir):
            raise AutostartError(f"cannot write to {self.unit_dir}: it needs to be writable")
        return ctl

    def preflight(self, system: System) -> None:
        self._ctl(system)

    def install(self, system: System) -> list[str]:
        ctl = self._ctl(system)
        done: list[str] = []
        text = self.render().encode()
        current = system.read(self.path)
        changed = current != text
        if changed:
            system.write(self.path, text)
            done.append(f"{'wrote' if current is None else 'updated'} {self.path}")
            run_checked(system, [ctl, "daemon-reload"])
            done.append("reloaded systemd (systemctl daemon-reload)")
        if system.run([ctl, "is-enabled", UNIT]).output.strip() != "enabled":
            run_checked(system, [ctl, "enable", UNIT])
            done.append(f"enabled {UNIT}: the agent starts at every boot")
        if system.run([ctl, "is-active", "--quiet", UNIT]).returncode != 0:
            run_checked(system, [ctl, "start", UNIT])
            done.append(f"started {UNIT}: the agent runs now (journalctl -u gdos-agent)")
        elif changed:
            run_checked(system, [ctl, "restart", UNIT])
            done.append(f"restarted {UNIT} with the new settings (services keep running)")
        return done

    def uninstall(self, system: System) -> list[str]:
        ctl = self._ctl(system)
        if not system.exists(self.path):
            return []
        run_checked(system, [ctl, "disable", "--now", UNIT])
        done = [f"stopped and disabled {UNIT} (the services it started keep running)"]
        system.remove(self.path)
        done.append(f"removed {self.path}")
        run_checked(system, [ctl, "daemon-reload"])
        done.append("reloaded systemd (systemctl daemon-reload)")
        return done
