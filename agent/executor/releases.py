"""An instance's releases on disk: each version unpacked into its own folder, an atomic `current`
pointer, and the folders that outlive every release.

    <instance>/releases/<release>/   one unpacked package; <release> = "<version>-<sha256[:8]>"
    <instance>/current               -> releases/<release> (a symlink swapped with os.replace; on
                                     Windows, where a symlink needs a privilege, a small file
                                     holding the release's name)
    <instance>/data/                 GDOS_DATA_DIR
    <instance>/shared/               service.json's shared_paths, linked into every release
    <instance>/logs/                 stdout and stderr

The agent's state file is the truth about which release is current; the agent computes paths
from it, and the pointer is made to agree with it at every start (`tidy`), so an agent killed
at any point comes back with the instance wholly on one release.
"""

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agent.state import atomic_write
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import NAME_PATTERN, Manifest, shared_path_name
from protocol.messages import PackageRef

log = logging.getLogger(__name__)

RELEASES = "releases"
CURRENT = "current"
SHARED = "shared"
LEGACY_APP = "app"  # where agents before releases unpacked the one version
TMP_SUFFIX = ".tmp"
ZIP_SUFFIX = ".zip"
SYMLINKS = os.name == "posix"  # else `current` is a file holding the release's name


@dataclass(frozen=True)
class Release:
    """A release kept on the node: what it was unpacked from, and its service.json."""

    name: str
    package: PackageRef
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.package.version

    def record(self) -> dict[str, Any]:
        """For the state file, whose encoder writes the structs as their dicts."""
        return {"name": self.name, "package": self.package, "manifest": self.manifest}

    @classmethod
    def from_record(cls, record: dict[str, Any], package: PackageRef | None = None) -> "Release":
        """`package`: the instance's own, used when it is the same (one object, not two)."""
        ref = PackageRef.from_data(record["package"])
        return cls(
            name=str(record["name"]),
            package=package if package == ref and package is not None else ref,
            manifest=shared(Manifest.from_data(record["manifest"])),
        )


_SHARED: dict[bytes, Manifest] = {}
SHARED_MAX = 64  # distinct manifests remembered, the oldest forgotten first


def shared(manifest: Manifest) -> Manifest:
    """One object for equal manifests (frozen): a host runs many instances of one package,
    and each instance's manifest and release would otherwise be copies."""
    key = msgspec.json.encode(manifest)
    found = _SHARED.get(key)
    if found is not None:
        return found
    if len(_SHARED) >= SHARED_MAX:
        del _SHARED[next(iter(_SHARED))]
    _SHARED[key] = manifest
    return manifest


def release_name(package: PackageRef) -> str:
    """ "1.0.1-3f9a2c1d": the version (a file name by the manifest's rule) and the package's
    sha256, so the same version uploaded again with other bytes is another release."""
    if NAME_PATTERN.fullmatch(package.version) is None or len(package.sha256) < 8:
        raise GdosError(
            ErrorCode.BAD_REQUEST,
            f"package {package.name} has an unusable version {package.version[:40]!r}",
        )
    return f"{package.version}-{package.sha256[:8].lower()}"


def folder(instance_dir: Path, name: str) -> Path:
    return instance_dir / RELEASES / name


def staging(instance_dir: Path, name: str) -> Path:
    """Where a release's package is downloaded before it is unpacked."""
    return instance_dir / RELEASES / f".{name}{ZIP_SUFFIX}"


# -- the pointer --------------------------------------------------------------------------------


def read_pointer(instance_dir: Path) -> str | None:
    pointer = instance_dir / CURRENT
    try:
        if pointer.is_symlink():
            return Path(os.readlink(pointer)).name
        return pointer.read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def write_pointer(instance_dir: Path, name: str) -> None:
    """Point `current` at a release in one step: readers see the old or the new one."""
    pointer = instance_dir / CURRENT
    if not SYMLINKS:
        atomic_write(pointer, name.encode(), mode=0o644)
        return
    tmp = instance_dir / f".{CURRENT}{TMP_SUFFIX}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(Path(RELEASES) / name, tmp, target_is_directory=True)
    os.replace(tmp, pointer)  # a directory-symlink rename replaces the link, never its target


# -- shared paths ---------------------------------------------------------------------------------


def link_shared(instance_dir: Path, release_dir: Path, manifest: Manifest) -> list[Path]:
    """Link each of the manifest's shared_paths from the release into `<instance>/shared`.

    A path shared for the first time takes the release's copy as its start (a default config
    file, an empty uploads folder), else it is made empty. Returns the shared files and folders
    (for their owner to be set)."""
    made = []
    for raw in manifest.shared_paths:
        rel, is_dir = shared_path_name(raw)
        inside = release_dir / rel
        kept = instance_dir / SHARED / rel
        kept.parent.mkdir(parents=True, exist_ok=True)
        present = inside.exists() or inside.is_symlink()
        if not kept.exists():
            if present and not inside.is_symlink() and inside.is_dir() == is_dir:
                os.replace(inside, kept)  # the first release's copy starts the shared one
            elif is_dir:
                kept.mkdir()
            else:
                kept.touch(mode=0o640)
        if inside.exists() or inside.is_symlink():
            _remove(inside)
        inside.parent.mkdir(parents=True, exist_ok=True)
        _link(kept, inside, is_dir)
        made.append(kept)
    return made


def _link(target: Path, link: Path, is_dir: bool) -> None:
    try:
        os.symlink(os.path.relpath(target, link.parent), link, target_is_directory=is_dir)
        return
    except OSError:
        if SYMLINKS:
            raise
    # Windows without the symlink privilege: a junction for a folder, a hard link for a file.
    if is_dir:
        import _winapi

        _winapi.CreateJunction(str(target), str(link))  # type: ignore[attr-defined,unused-ignore]
    else:
        os.link(target, link)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# -- keeping and tidying ---------------------------------------------------------------------------


def prune(
    releases: tuple[Release, ...], keep: int, protect: set[str]
) -> tuple[tuple[Release, ...], list[Release]]:
    """(kept, dropped): at most `keep` releases, the oldest dropped first (`releases` runs from
    the least to the most recently used), never one in `protect` (current and previous)."""
    kept = list(releases)
    dropped = []
    for release in releases:
        if len(kept) <= keep:
            break
        if release.name not in protect:
            kept.remove(release)
            dropped.append(release)
    return tuple(kept), dropped


def remove_release(instance_dir: Path, name: str) -> None:
    shutil.rmtree(folder(instance_dir, name), ignore_errors=True)


def tidy(instance_dir: Path, known: set[str], current: str | None) -> None:
    """At the agent's start: drop what an interrupted prepare left (unpack folders, downloads,
    a release unpacked but never recorded), and point `current` where the state file says."""
    base = instance_dir / RELEASES
    try:
        entries = list(base.iterdir())
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if entry.name in known and entry.is_dir() and not entry.is_symlink():
            continue
        log.info("removing %s: left by an interrupted prepare", entry)
        with contextlib.suppress(OSError):
            _remove(entry)
    with contextlib.suppress(FileNotFoundError):
        (instance_dir / f".{CURRENT}{TMP_SUFFIX}").unlink()
    if current is not None and read_pointer(instance_dir) != current:
        log.info("pointing %s at %s, as the state file says", instance_dir / CURRENT, current)
        write_pointer(instance_dir, current)


def migrate_legacy(instance_dir: Path, name: str) -> bool:
    """An instance unpacked by an older agent into `<instance>/app`: rename that into
    `releases/<name>` and point `current` at it. A running process keeps running (its folder is
    renamed, not copied); `app` is left as a link to `current`, so whatever still holds the old
    path (a service's own search path) finds its files. True when the release is in place."""
    app = instance_dir / LEGACY_APP
    target = folder(instance_dir, name)
    if app.is_dir() and not app.is_symlink() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(app, target)
        log.info("moved %s to %s", app, target)
    if not target.is_dir():
        return False
    write_pointer(instance_dir, name)
    if SYMLINKS and not app.exists() and not app.is_symlink():
        os.symlink(CURRENT, app, target_is_directory=True)
    return True
