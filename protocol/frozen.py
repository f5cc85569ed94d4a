"""What differs in a PyInstaller bundle: build info for `--version`, a clean child environment.

A frozen build carries a generated module, `_gdos_build_info` (written by the build_spec/ specs),
with the git commit and build date; from source the commit is derived lazily with `git describe`.
"""

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from protocol import __version__

BUILD_INFO_MODULE = "_gdos_build_info"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


@cache
def build_info() -> dict[str, str]:
    """version, commit, build date, frozen or not, Python version."""
    commit, built = "unknown", "not built (running from source)"
    try:
        generated = __import__(BUILD_INFO_MODULE)
        commit = str(getattr(generated, "COMMIT", commit))
        built = str(getattr(generated, "BUILD_DATE", built))
    except ImportError:
        commit = git_describe(SOURCE_ROOT) or commit
    return {
        "version": __version__,
        "commit": commit,
        "build_date": built,
        "frozen": "yes" if is_frozen() else "no",
        "python": sys.version.split()[0],
    }


def program_command(program: str) -> list[str]:
    """How to run another GDOS program (`gdos-master`, `gdos-agent`): in a frozen build the
    binary beside this one, from source this Python's `-m master` / `-m agent`."""
    if is_frozen():
        suffix = ".exe" if os.name == "nt" else ""
        return [str(Path(sys.executable).with_name(program + suffix))]
    return [sys.executable, "-m", program.removeprefix("gdos-")]


def git_describe(root: Path) -> str | None:
    """`git describe --always --dirty` of a checkout, or None (no git, not a checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def version_text(program: str) -> str:
    info = build_info()
    return (
        f"{program} {info['version']}\n"
        f"  commit     : {info['commit']}\n"
        f"  built      : {info['build_date']}\n"
        f"  frozen     : {info['frozen']}\n"
        f"  python     : {info['python']} ({sys.platform})"
    )


# Set by the PyInstaller bootloader for its own use; a child that inherits them may load the
# bundle's private libraries (LD_LIBRARY_PATH) or, if it is itself a frozen program, mistake
# itself for a part of this bundle (_PYI_*).
# The bootloader keeps the user's own value in <name>_ORIG (Linux: LD_LIBRARY_PATH; AIX: LIBPATH).
_LIBRARY_PATHS = ("LD_LIBRARY_PATH", "LIBPATH")


def child_environ(base: dict[str, str] | None = None, frozen: bool | None = None) -> dict[str, str]:
    """The environment for programs we start: ours, minus what a PyInstaller bundle added."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith("_PYI_") or k == "_MEIPASS2"]:
        del env[key]
    if is_frozen() if frozen is None else frozen:
        for name in _LIBRARY_PATHS:
            original = env.pop(name + "_ORIG", None)
            if original is not None:
                env[name] = original
            else:
                env.pop(name, None)
    return env
