"""`--self-check`: import every module a program can reach and run its start-up checks, so a
build that left something out fails at once, naming it, instead of at the first click needing it.

A program reaches all of its own package and the GDOS modules those import, at any depth
(imports inside functions too), read from the sources. A frozen build carries that list, made
at build time (`_gdos_build_info.MODULES`), because walking the bundle would only find what the
bundle already holds.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from protocol.frozen import BUILD_INFO_MODULE, SOURCE_ROOT, is_frozen

Check = tuple[str, Callable[[], str]]  # (what, run it: a short result, or raise)
FIRST_PARTY = ("protocol", "agent", "master", "console")


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


def reachable_modules(package: str, root: Path = SOURCE_ROOT) -> list[str]:
    """The modules of `package` and every GDOS module they import, at any depth."""
    files = {name: _module_file(root, name) for name in source_modules(FIRST_PARTY, root)}
    todo = [m for m in files if m == package or m.startswith(package + ".")]
    seen = set(todo)
    while todo:
        name = todo.pop()
        for imported in _imported_names(files[name]):
            parts = imported.split(".")
            for depth in range(1, len(parts) + 1):  # `a.b.c` imports a and a.b too
                candidate = ".".join(parts[:depth])
                if candidate in files and candidate not in seen:
                    seen.add(candidate)
                    todo.append(candidate)
    return sorted(seen)


def _module_file(root: Path, name: str) -> Path:
    path = root.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported_names(path: Path) -> Iterable[str]:
    """Absolute names a module imports (`from a import b` names a and a.b: b may be a module)."""
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def program_modules(package: str) -> list[str]:
    """What the program of `package` reaches: the build's list when frozen, else the sources'."""
    if is_frozen():
        try:
            built: dict[str, Sequence[str]] = importlib.import_module(BUILD_INFO_MODULE).MODULES
            return list(built[package])
        except (ImportError, AttributeError, KeyError, TypeError):
            raise SelfCheckFailed(
                f"the build carries no module list for {package} ({BUILD_INFO_MODULE})"
            ) from None
    return reachable_modules(package)


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
    package: str,
    loaded_by_name: Sequence[str] = (),
    checks: Sequence[Check] = (),
) -> int:
    """Print one line per step; 0 when all pass, 1 (and the failure on stderr) otherwise."""
    try:
        count = import_all([*program_modules(package), *loaded_by_name])
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
