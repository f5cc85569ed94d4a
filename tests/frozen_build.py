"""The frozen programs for tests and benches: built once per source state, then reused.

One PyInstaller run of build_spec/all.spec (each program analysed once; a few minutes on two
cores) makes the one-file gdos-agent and gdos-master and the gdos-console/ folder. They land in
build/frozen-cache/dist-<hash>/, where <hash> covers everything that goes into them (the
programs' sources, resources/, build_spec/, pyproject, the Python and the installed packages'
versions). A file lock keeps two runs from building at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "frozen-cache"
SOURCES = ("agent", "master", "console", "protocol", "build_spec")
BUILT = ("gdos-agent", "gdos-master", "gdos-console")


def source_hash() -> str:
    h = hashlib.sha256(sys.version.encode())
    # The venv's packages only: on sys.path a checkout's own *.egg-info may count twice or not.
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    installed = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions(path=site)}
    )
    h.update("\n".join(installed).encode())
    files = [ROOT / "pyproject.toml", *(ROOT / "resources").rglob("*")]
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".spec", ".mako")]
    # Packaging works on the built programs and does not change them.
    files = [f for f in files if f.name != "package_deb.py"]
    for path in sorted(f for f in files if f.is_file()):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def frozen_dist(timeout: float = 1800) -> Path:
    """The folder holding gdos-agent, gdos-master and gdos-console/ built from these sources."""
    target = CACHE / f"dist-{source_hash()}"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another run built it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            t0 = time.monotonic()
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
                    str(ROOT / "build_spec" / "all.spec"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if done.returncode != 0:
                raise RuntimeError(f"building the frozen programs failed:\n{done.stderr[-4000:]}")
            (Path(tmp) / "dist" / "build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
            for old in [*CACHE.glob("dist-*"), *CACHE.glob("agent-*")]:
                shutil.rmtree(old, ignore_errors=True)
            shutil.move(str(Path(tmp) / "dist"), target)
    return target


def frozen_agent() -> Path:
    """The one-file agent."""
    return frozen_dist() / "gdos-agent"


def frozen_master() -> Path:
    """The one-file master."""
    return frozen_dist() / "gdos-master"


def frozen_console() -> Path:
    """The console's program inside its folder (gdos-master and gdos-agent beside it)."""
    return frozen_dist() / "gdos-console" / "gdos-console"


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
