"""The console's `--self-check`: its modules, its resources and Qt plugins (the icon drawn
offscreen through the SVG plugin), then the master and agent its embedded mode starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from protocol import selfcheck
from protocol.frozen import child_environ, is_frozen, program_command

LOADED_BY_NAME = ("PySide6.QtCharts", "qasync")
# Platform plugins a desktop of this OS needs (the others are optional).
PLATFORM_PLUGINS = {"linux": ("xcb",), "win32": ("windows",), "darwin": ("cocoa",)}


def resources() -> str:
    from PySide6.QtGui import QGuiApplication, QIcon

    from console.app import resource

    missing = [n for n in ("style.qss", "icon.svg") if not resource(n).is_file()]
    if missing:
        raise selfcheck.SelfCheckFailed(f"resources missing: {', '.join(missing)}")
    app = QGuiApplication.instance() or QGuiApplication(["gdos-console", "-platform", "offscreen"])
    if QIcon(str(resource("icon.svg"))).pixmap(32, 32).isNull():
        raise selfcheck.SelfCheckFailed("the icon does not render (Qt's SVG plugins missing?)")
    del app
    return "style sheet and icon"


def qt_plugins() -> str:
    from PySide6.QtCore import QLibraryInfo

    root = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    found = {p.name for p in (root / "platforms").glob("*")}
    names = PLATFORM_PLUGINS.get(sys.platform, ())
    missing = [n for n in names if not any(n in f for f in found)]
    if missing:
        raise selfcheck.SelfCheckFailed(f"Qt platform plugin missing: {', '.join(missing)}")
    return f"platforms {', '.join(sorted(found))}"


def siblings() -> str:
    for name in ("gdos-master", "gdos-agent"):
        argv = [*program_command(name), "--self-check"]
        if is_frozen() and not Path(argv[0]).is_file():
            raise selfcheck.SelfCheckFailed(f"{name} is not in the bundle ({argv[0]})")
        done = subprocess.run(
            argv, env=child_environ(), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise selfcheck.SelfCheckFailed(f"{name} --self-check: {why}")
    return "gdos-master and gdos-agent passed theirs"


def run() -> int:
    checks = [("resources", resources), ("Qt plugins", qt_plugins), ("bundled programs", siblings)]
    return selfcheck.run("gdos-console", "console", LOADED_BY_NAME, checks)
