"""Windows: a Task Scheduler task that starts the agent at boot, before any log-on, as SYSTEM.

Registered with `schtasks /Create /XML <file> /TN GDOS-Agent /F`; a copy of the XML stays in the
work dir, so a second run can tell that nothing changed.
"""

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from agent.autostart.command import DESCRIPTION, AgentCommand
from agent.autostart.system import AutostartError, System, run_checked

TASK = "GDOS-Agent"
XML_FILE = "gdos-agent-task.xml"
NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
SYSTEM_SID = "S-1-5-18"  # LocalSystem: runs without anyone logged on
RESTART_INTERVAL = "PT1M"  # the shortest interval Task Scheduler accepts
RESTART_COUNT = 999  # the most it accepts


def task_xml(command: AgentCommand) -> str:
    ET.register_namespace("", NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        el = ET.SubElement(parent, f"{{{NS}}}{tag}")
        if text is not None:
            el.text = text
        return el

    task = ET.Element(f"{{{NS}}}Task", {"version": "1.2"})
    info = sub(task, "RegistrationInfo")
    sub(info, "Description", DESCRIPTION)
    sub(info, "URI", "\\" + TASK)
    boot = sub(sub(task, "Triggers"), "BootTrigger")
    sub(boot, "Enabled", "true")
    principal = sub(sub(task, "Principals"), "Principal")
    principal.set("id", "Author")
    sub(principal, "UserId", SYSTEM_SID)
    sub(principal, "RunLevel", "HighestAvailable")
    settings = sub(task, "Settings")
    for tag, value in (
        ("MultipleInstancesPolicy", "IgnoreNew"),
        ("DisallowStartIfOnBatteries", "false"),
        ("StopIfGoingOnBatteries", "false"),
        ("AllowHardTerminate", "true"),
        ("StartWhenAvailable", "true"),
        ("RunOnlyIfNetworkAvailable", "false"),
        ("AllowStartOnDemand", "true"),
        ("Enabled", "true"),
        ("Hidden", "false"),
        ("RunOnlyIfIdle", "false"),
        ("WakeToRun", "false"),
        ("ExecutionTimeLimit", "PT0S"),  # no limit: the agent runs until the machine stops
        ("Priority", "5"),  # normal; the default 7 is below normal and services inherit it
    ):
        sub(settings, tag, value)
    idle = sub(settings, "IdleSettings")
    sub(idle, "StopOnIdleEnd", "false")
    sub(idle, "RestartOnIdle", "false")
    restart = sub(settings, "RestartOnFailure")
    sub(restart, "Interval", RESTART_INTERVAL)
    sub(restart, "Count", str(RESTART_COUNT))
    actions = sub(task, "Actions")
    actions.set("Context", "Author")
    exe = sub(actions, "Exec")
    sub(exe, "Command", command.argv[0])
    sub(exe, "Arguments", subprocess.list2cmdline(command.argv[1:]))
    # An action has no environment of its own: from source, `-m agent` finds the package through
    # the working directory instead of PYTHONPATH (the agent takes --work-dir as an absolute path).
    sub(exe, "WorkingDirectory", command.env.get("PYTHONPATH", str(command.work_dir)))
    ET.indent(task)
    body = ET.tostring(task, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-16"?>\n{body}\n'


@dataclass
class TaskScheduler:
    command: AgentCommand
    schtasks: str | None = None

    name = "Task Scheduler"

    @property
    def path(self) -> Path:
        return self.command.work_dir / XML_FILE

    def render(self) -> str:
        return task_xml(self.command)

    def _tool(self, system: System) -> str:
        tool = self.schtasks or system.which("schtasks")
        if tool is None:
            raise AutostartError("schtasks.exe was not found: Task Scheduler is needed")
        if not system.is_admin():
            raise AutostartError(
                f"registering the {TASK} task (runs as SYSTEM at boot) needs an elevated "
                "prompt: run the same command from a terminal opened with 'Run as administrator'"
            )
        return tool

    def preflight(self, system: System) -> None:
        self._tool(system)

    def install(self, system: System) -> list[str]:
        tool = self._tool(system)
        xml_path = self.path
        data = self.render().encode("utf-16")  # with a BOM, as schtasks expects
        registered = system.run([tool, "/Query", "/TN", TASK]).returncode == 0
        if registered and system.read(xml_path) == data:
            return []
        system.write(xml_path, data)
        run_checked(system, [tool, "/Create", "/XML", str(xml_path), "/TN", TASK, "/F"])
        done = [f"registered task {TASK} from {xml_path}: the agent starts at boot as SYSTEM"]
        if registered:  # the old definition may be running: restart it with the new one
            system.run([tool, "/End", "/TN", TASK])
        run_checked(system, [tool, "/Run", "/TN", TASK])
        done.append(f"started task {TASK}: the agent runs now")
        return done

    def uninstall(self, system: System) -> list[str]:
        tool = self._tool(system)
        xml_path = self.path
        done: list[str] = []
        if system.run([tool, "/Query", "/TN", TASK]).returncode == 0:
            system.run([tool, "/End", "/TN", TASK])  # fails harmlessly when it is not running
            run_checked(system, [tool, "/Delete", "/TN", TASK, "/F"])
            done.append(f"stopped and deleted task {TASK}")
        if system.remove(xml_path):
            done.append(f"removed {xml_path}")
        return done
