"""The one-file agent for tests and benches: built once per source state, then reused.

The build (PyInstaller, ~35-80 s on two cores) lands in build/frozen-cache/agent-<hash>/, where
<hash> covers everything that goes into the binary (agent/, protocol/, build_spec/, pyproject,
the Python and PyInstaller versions). A file lock keeps two runs from building at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "frozen-cache"
SOURCES = ("agent", "protocol", "build_spec")


def source_hash() -> str:
    import PyInstaller  # type: ignore[import-untyped]

    h = hashlib.sha256()
    h.update(f"{sys.version}|{PyInstaller.__version__}".encode())
    files = [ROOT / "pyproject.toml"]
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".spec")]
    for path in sorted(files):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def frozen_agent(timeout: float = 900) -> Path:
    """The path of a one-file agent built from the current sources (building it if needed)."""
    key = source_hash()
    target = CACHE / f"agent-{key}" / "gdos-agent"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another run built it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "PyInstaller",
                    "--noconfirm",
                    "--log-level",
                    "WARN",
                    "--distpath",
                    str(Path(tmp) / "dist"),
                    "--workpath",
                    str(Path(tmp) / "work"),
                    str(ROOT / "build_spec" / "agent.spec"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if done.returncode != 0:
                raise RuntimeError(f"building the frozen agent failed:\n{done.stderr[-4000:]}")
            for old in CACHE.glob("agent-*"):
                shutil.rmtree(old, ignore_errors=True)
            target.parent.mkdir(parents=True)
            shutil.move(str(Path(tmp) / "dist" / "gdos-agent"), target)
    return target


def agent_processes(bootloader_pid: int) -> list[int]:
    """A one-file program is two processes: the bootloader and the Python it starts (same exe)."""
    import psutil

    pids = [bootloader_pid]
    with contextlib.suppress(psutil.Error):
        boot = psutil.Process(bootloader_pid)
        exe = boot.exe()
        for child in boot.children():
            with contextlib.suppress(psutil.Error):
                if child.exe() == exe:
                    pids.append(child.pid)
    return pids
