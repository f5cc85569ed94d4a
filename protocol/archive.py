"""Safe inspection and extraction of service packages (.zip with service.json at the root).

The master runs `inspect_package` before it registers an upload; the agent runs
`extract_package` to unpack. Both apply the same rules, counted on the bytes actually
decompressed, never on what the zip headers claim:
no entry outside the root (`..`, absolute, drive letter, backslash tricks, NUL bytes),
no symlinks, no duplicate names, and limits on entry count, total size and ratio.

A large entry stored without compression is checked straight from the file (its bytes are the
file's bytes): its CRC-32 is summed over that range in parallel pieces (`protocol.crc`) rather
than streamed through zipfile on one core, or derived from the CRCs the master took while the
upload was written (`CrcMarks`). Same rules, same errors.
"""

import hashlib
import os
import stat
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from protocol.crc import CrcMarks, file_crc32
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest, ManifestError, is_safe_relative_path, parse_manifest

MANIFEST_NAME = "service.json"
_CHUNK = 1 << 20
# Entries are unpacked in smaller pieces: under glibc's usual mmap threshold they reuse the
# heap's blocks, where 1 MiB pieces would each be mapped and unmapped (the agent keeps that
# threshold fixed, agent.limits).
_ENTRY_CHUNK = 64 << 10
STORED_FAST_MIN = 8 << 20  # stored entries from this size on are checked in place
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 20_000
    max_total_bytes: int = 8 << 30
    max_ratio: float = 200.0  # per entry, applied once an entry passes `ratio_floor` bytes
    ratio_floor: int = 1 << 20
    max_manifest_bytes: int = 1 << 20


class PackageError(GdosError):
    """A package was refused; `code` says which rule and `message` names the problem."""


def _unsafe(message: str, entry: str) -> PackageError:
    return PackageError(ErrorCode.UNSAFE_ARCHIVE, message, {"entry": entry})


def check_entry_name(info: zipfile.ZipInfo) -> str:
    """Return the entry's normalized relative name or raise if it could escape the root."""
    raw = info.orig_filename  # `filename` silently drops everything after a NUL byte
    if "\x00" in raw:
        raise _unsafe(f"entry name {raw!r} contains a NUL byte", raw)
    if not is_safe_relative_path(raw):
        raise _unsafe(f"entry {raw!r} points outside the package (absolute path or '..')", raw)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _unsafe(f"entry {raw!r} is a symbolic link; links are not allowed", raw)
    name = raw.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise _unsafe(f"entry {raw!r} has an empty name", raw)
    return "/".join(parts) + ("/" if name.endswith("/") else "")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(
            ErrorCode.INVALID_PACKAGE, f"the upload is not a valid zip archive ({exc})"
        ) from None


def _safe_entries(
    zf: zipfile.ZipFile, limits: ArchiveLimits
) -> Iterator[tuple[zipfile.ZipInfo, str]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise PackageError(
            ErrorCode.UNSAFE_ARCHIVE,
            f"the archive has {len(infos)} entries; the limit is {limits.max_entries}",
        )
    seen: set[str] = set()
    for info in infos:
        name = check_entry_name(info)
        key = name.rstrip("/").lower()
        if key in seen:
            raise _unsafe(f"entry {name!r} appears more than once", name)
        seen.add(key)
        yield info, name


class _Budget:
    """Counts decompressed bytes across the archive and per entry."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.total = 0

    def copy(self, info: zipfile.ZipInfo, src: IO[bytes], sink: Callable[[bytes], object]) -> int:
        written = 0
        while chunk := src.read(_ENTRY_CHUNK):
            written += len(chunk)
            self.count(info, len(chunk), written)
            sink(chunk)
        return written

    def count(self, info: zipfile.ZipInfo, more: int, written: int) -> None:
        """Count `more` bytes of `info` (`written` of it so far, these included)."""
        self.total += more
        if self.total > self.limits.max_total_bytes:
            raise PackageError(
                ErrorCode.UNSAFE_ARCHIVE,
                "the archive expands beyond the limit of "
                f"{self.limits.max_total_bytes} bytes (zip bomb?)",
                {"entry": info.orig_filename},
            )
        compressed = max(info.compress_size, 1)
        if written > self.limits.ratio_floor and written / compressed > self.limits.max_ratio:
            raise PackageError(
                ErrorCode.UNSAFE_ARCHIVE,
                f"entry {info.orig_filename!r} expands more than {self.limits.max_ratio:.0f}"
                " times its compressed size (zip bomb?)",
                {"entry": info.orig_filename},
            )


def _unreadable(info: zipfile.ZipInfo, why: object) -> PackageError:
    return PackageError(
        ErrorCode.INVALID_PACKAGE,
        f"entry {info.orig_filename!r} cannot be read ({why})",
        {"entry": info.orig_filename},
    )


def _read_entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, sink: Callable[[bytes], object]
) -> None:
    try:
        with zf.open(info) as src:
            budget.copy(info, src, sink)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        # Corrupt data, bad CRC, unsupported compression or an encrypted entry.
        raise _unreadable(info, exc) from None


def _check_stored_in_place(
    zf: zipfile.ZipFile,
    path: Path,
    info: zipfile.ZipInfo,
    budget: _Budget,
    marks: CrcMarks | None = None,
) -> bool:
    """Check a large stored entry without streaming it; False if `info` is not one."""
    if (
        info.compress_type != zipfile.ZIP_STORED
        or info.compress_size != info.file_size
        or info.file_size < STORED_FAST_MIN
    ):
        return False
    try:
        with zf.open(info):  # zipfile's own checks of the local header: name, flags, encryption
            pass
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            magic, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise _unreadable(info, exc) from None
    except struct.error:
        raise _unreadable(info, "truncated local header") from None
    if magic != b"PK\x03\x04":
        raise _unreadable(info, "bad magic number for file header")
    budget.count(info, info.file_size, info.file_size)
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    try:
        if marks is not None:
            crc = marks.range_crc(path, start, info.file_size)
        else:
            crc = file_crc32(path, start, info.file_size)
    except EOFError:
        raise _unreadable(info, "the archive ends inside it") from None
    if crc != info.CRC:
        raise _unreadable(info, f"Bad CRC-32 for file {info.filename!r}")
    return True


def _parse_manifest_bytes(data: bytes, strict: bool = False) -> Manifest:
    try:
        return parse_manifest(data, strict)
    except ManifestError as exc:
        raise PackageError(
            ErrorCode.INVALID_MANIFEST,
            f"service.json is invalid: {exc}",
            {"problems": exc.problems},
        ) from None


def _check_manifest_targets(manifest: Manifest, files: set[str]) -> None:
    for field in ("entrypoint", "stop_entrypoint"):
        target = getattr(manifest, field)
        if target is None:
            continue
        if target not in files and f"{target}.exe" not in files:
            raise PackageError(
                ErrorCode.INVALID_MANIFEST,
                f"service.json {field} {target!r} is not a file in the package",
                {"problems": [{"field": field, "message": "not a file in the package"}]},
            )


def inspect_package(
    path: Path, limits: ArchiveLimits | None = None, marks: CrcMarks | None = None
) -> Manifest:
    """Validate a package on disk completely (every entry decompressed) and return its manifest.
    Unknown keys in its service.json are refused (extraction on a node takes them). `marks`,
    taken while the file was written, spare reading its large stored entries again."""
    limits = limits or ArchiveLimits()
    if marks is not None and marks.size != os.path.getsize(path):
        marks = None  # not of this file as it is
    budget = _Budget(limits)
    files: set[str] = set()
    manifest_bytes: bytearray | None = None
    with _open_zip(path) as zf:
        for info, name in _safe_entries(zf, limits):
            if name.endswith("/"):
                continue
            files.add(name)
            if name == MANIFEST_NAME:
                manifest_bytes = bytearray()
                _read_entry(zf, info, budget, _bounded_append(manifest_bytes, limits))
            elif not _check_stored_in_place(zf, path, info, budget, marks):
                _read_entry(zf, info, budget, _discard)
    if manifest_bytes is None:
        raise PackageError(
            ErrorCode.INVALID_MANIFEST, "the package has no service.json at its root"
        )
    manifest = _parse_manifest_bytes(bytes(manifest_bytes), strict=True)
    _check_manifest_targets(manifest, files)
    return manifest


def _discard(_: bytes) -> None:
    return None


def _bounded_append(buf: bytearray, limits: ArchiveLimits) -> Callable[[bytes], None]:
    def sink(chunk: bytes) -> None:
        buf.extend(chunk)
        if len(buf) > limits.max_manifest_bytes:
            raise PackageError(ErrorCode.INVALID_MANIFEST, "service.json is larger than 1 MiB")

    return sink


def extract_package(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> Manifest:
    """Unpack into `dest` (which must not exist) applying every rule of `inspect_package`.

    On error `dest` may hold a partial tree: callers extract into a temporary directory and
    rename it into place only on success.
    """
    limits = limits or ArchiveLimits()
    budget = _Budget(limits)
    dest.mkdir(parents=True)
    root = dest.resolve()
    files: set[str] = set()
    with _open_zip(path) as zf:
        for info, name in _safe_entries(zf, limits):
            target = (root / name).resolve()
            if target != root and root not in target.parents:
                raise _unsafe(f"entry {name!r} points outside the package", name)
            if name.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            files.add(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:
                _read_entry(zf, info, budget, out.write)
            mode = (info.external_attr >> 16) & 0o777
            if os.name == "posix" and mode:
                os.chmod(target, (mode & 0o755) | 0o600)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PackageError(
            ErrorCode.INVALID_MANIFEST, "the package has no service.json at its root"
        )
    manifest = _parse_manifest_bytes(manifest_path.read_bytes())
    _check_manifest_targets(manifest, files)
    return manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return h.hexdigest(), size
