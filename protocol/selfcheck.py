"""`--self-check`: import every module a program can reach and run its start-up checks, so a
build that left something out fails at once, naming it, instead of at the first click needing it.

From source the modules are found by walking the packages' files; a frozen build carries the
same list, made from the source tree at build time (`_gdos_build_info.MODULES`), because walking
the bundle would only find what the bundle already holds.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from protocol.frozen import BUILD_INFO_MODULE, SOURCE_ROOT, is_frozen

Check = tuple[str, Callable[[], str]]  # (what, run it: a short result, or raise)


class SelfCheckFailed(Exception):
    """A start-up check found something missing; the message names it."""


def source_modules(packages: Iterable[str], root: Path = SOURCE_ROOT) -> list[str]:
    """Every module of these packages in a source tree (folders without __init__.py skipped)."""
    names: list[str] = []
    for package in packages:
        top = root / package
        for path in sorted(top.rglob("*.py")):
            if not _inside_package(path, top):
                continue
            parts = path.relative_to(root).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _inside_package(path: Path, top: Path) -> bool:
    """Every folder from the file's up to `top` has an __init__.py (migrations/ has none)."""
    folder = path.parent
    while (folder / "__init__.py").exists():
        if folder == top:
            return True
        folder = folder.parent
    return False


def program_modules(packages: Sequence[str]) -> list[str]:
    """The build's list in a frozen program (its packages only), else the source tree's."""
    if is_frozen():
        try:
            built: Sequence[str] = importlib.import_module(BUILD_INFO_MODULE).MODULES
        except (ImportError, AttributeError):
            raise SelfCheckFailed(
                f"the build carries no module list ({BUILD_INFO_MODULE})"
            ) from None
        return [m for m in built if m.split(".")[0] in packages]
    return source_modules(packages)


def import_all(names: Iterable[str]) -> int:
    """Import each module; raise SelfCheckFailed naming the first that fails."""
    count = 0
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure at import is what this check exists to report
            raise SelfCheckFailed(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc
        count += 1
    return count


def run(
    program: str,
    packages: Sequence[str],
    loaded_by_name: Sequence[str] = (),
    checks: Sequence[Check] = (),
) -> int:
    """Print one line per step; 0 when all pass, 1 (and the failure on stderr) otherwise."""
    try:
        count = import_all([*program_modules(packages), *loaded_by_name])
        print(f"{program}: imported {count} modules", flush=True)
        for what, check in checks:
            try:
                result = check()
            except SelfCheckFailed:
                raise
            except Exception as exc:  # a check's own failure, reported by name like an import
                raise SelfCheckFailed(f"{what}: {type(exc).__name__}: {exc}") from exc
            print(f"{program}: {what}: {result}", flush=True)
    except SelfCheckFailed as exc:
        print(f"{program}: self-check failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"{program}: self-check passed", flush=True)
    return 0
