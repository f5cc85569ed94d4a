"""The OS seam of autostart: every command it runs and every file it touches goes through here.

Backends decide *what* to do from what `System` answers; `RealSystem` does it, and tests pass a
fake that records the commands and keeps files in memory, so they can assert on exactly what
would be issued on a host they cannot (or must not) change.
"""

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Completed:
    returncode: int
    output: str  # stdout and stderr together, stripped


class AutostartError(Exception):
    """Autostart cannot be changed here; the message says what is needed (exit code 2)."""


class System(Protocol):
    def run(self, argv: list[str]) -> Completed: ...
    def read(self, path: Path) -> bytes | None: ...
    def write(self, path: Path, data: bytes) -> None: ...
    def remove(self, path: Path) -> bool: ...
    def exists(self, path: Path) -> bool: ...
    def which(self, name: str) -> str | None: ...
    def is_admin(self) -> bool: ...
    def writable(self, directory: Path) -> bool: ...


def run_checked(system: "System", argv: list[str]) -> None:
    """Run a command through the seam; a failure is an AutostartError quoting its output."""
    done = system.run(argv)
    if done.returncode != 0:
        raise AutostartError(
            f"`{' '.join(argv)}` failed (exit code {done.returncode}): {done.output}"
        )


class RealSystem:
    def run(self, argv: list[str]) -> Completed:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Completed(-1, str(exc))
        return Completed(done.returncode, (done.stdout + done.stderr).strip())

    def read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: Path, data: bytes) -> None:
        # Unit files and plists are read by the service manager, not secrets: 0644.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        with contextlib.suppress(OSError):
            tmp.chmod(0o644)
        os.replace(tmp, path)

    def remove(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, path: Path) -> bool:
        return path.exists()

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def is_admin(self) -> bool:
        if os.name == "nt":
            import ctypes  # Windows only: not worth its RSS on every other agent

            try:
                return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
            except (AttributeError, OSError):
                return False
        return os.geteuid() == 0

    def writable(self, directory: Path) -> bool:
        return directory.is_dir() and os.access(directory, os.W_OK)
