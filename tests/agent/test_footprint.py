"""What a running agent imports is what every host pays for in RSS (issue 9 compares it with
supervisord). Checked in a fresh interpreter: the import of the agent's entry point must not
pull in modules only some agents ever need."""

import json
import subprocess
import sys

from tests.support import ROOT

# Each of these is imported where it is needed: the autostart backends (plistlib, ElementTree
# with pyexpat, ctypes for Windows' admin check), the master's stack (pydantic, SQLAlchemy,
# FastAPI) and httpx, which the agent replaced with urllib.
ONLY_WHEN_NEEDED = ("plistlib", "xml", "pyexpat", "ctypes", "pydantic", "sqlalchemy", "httpx")


def test_the_agent_does_not_import_what_only_some_agents_need() -> None:
    code = (
        "import json, sys; import agent.__main__; "
        f"print(json.dumps([m for m in {ONLY_WHEN_NEEDED!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_an_autostart_backend_still_loads_when_asked_for() -> None:
    from agent.autostart import backend_for
    from agent.autostart.command import agent_command

    command = agent_command("http://127.0.0.1:8080", ROOT / "work")
    assert backend_for("macos", command).name == "launchd"
    assert backend_for("windows", command).name == "Task Scheduler"
