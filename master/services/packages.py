"""Receiving, validating and registering service packages.

A package is streamed to a temporary file (sha256 computed on the way, never held in memory),
validated completely (every entry decompressed and counted), then moved into the store and
registered. Any failure removes the temporary file: nothing is kept from a rejected upload.
"""

import asyncio
import errno
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import lock_row
from master.services import instance_settings
from master.storage.base import PackageStore
from master.storage.spool import Spool, new_hash, new_marks
from protocol.archive import ArchiveLimits, inspect_package
from protocol.crc import CrcMarks
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest

log = logging.getLogger(__name__)


def storage_error(exc: OSError) -> GdosError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GdosError(
            ErrorCode.STORAGE_FULL,
            "the master's disk is full; free space or move --upload-dir, then upload again",
        )
    return GdosError(ErrorCode.STORAGE_ERROR, f"the master could not store the upload: {exc}")


def too_large(limit: int) -> GdosError:
    return GdosError(
        ErrorCode.TOO_LARGE,
        f"the package is larger than the limit of {limit} bytes (--max-package-size)",
        {"limit": limit},
    )


class Received(NamedTuple):
    path: Path
    sha256: str
    size: int
    marks: CrcMarks  # the file's CRC-32 taken as it was written, for validation


async def receive_to_file(chunks: AsyncIterator[bytes], incoming: Path, limit: int) -> Received:
    """Write a streamed body to a new file in `incoming`."""
    path = incoming / f"upload-{secrets.token_hex(8)}.part"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise storage_error(exc) from None
    marks = new_marks()
    spool = Spool(fd, new_hash(), 0, marks=marks)
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            await spool.feed(chunk)
        await spool.drain()
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise storage_error(exc) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        spool.settle_now()
        os.close(fd)
    return Received(path, spool.hasher.hexdigest(), size, marks)


def _check_unique(s: Session, manifest: Manifest) -> None:
    existing = s.scalars(
        select(models.Package.id).where(
            models.Package.name == manifest.name, models.Package.version == manifest.version
        )
    ).first()
    if existing is not None:
        raise GdosError(
            ErrorCode.ALREADY_EXISTS,
            f"package {manifest.name} {manifest.version} already exists; bump the version",
            {"package_id": existing},
        )


async def register_file(
    s: Session,
    store: PackageStore,
    path: Path,
    sha256: str,
    size: int,
    uploaded_by: str,
    limits: ArchiveLimits | None = None,
    before_commit: Callable[[models.Package], None] | None = None,
    marks: CrcMarks | None = None,
    put: Callable[[Path, str], Awaitable[None]] | None = None,
) -> models.Package:
    """Validate the file at `path` and register it; `path` is consumed either way.

    `before_commit` may change rows of the same session, so they commit with the package;
    `marks` are the file's CRCs taken as it was written (validation need not read it again);
    `put` stores the bytes instead of `store.put` (when they are in the store already).
    """
    try:
        manifest = await asyncio.to_thread(inspect_package, path, limits, marks)
        _check_unique(s, manifest)
        pkg = models.Package(
            name=manifest.name,
            version=manifest.version,
            description=manifest.description,
            os=manifest.os,
            sha256=sha256,
            size=size,
            uploaded_by=uploaded_by,
            manifest=manifest.to_dict(),
        )
        s.add(pkg)
        s.flush()  # the unique constraint speaks before the file moves
        try:
            await (put or store.put)(path, sha256)
        except OSError as exc:
            raise storage_error(exc) from None
        if before_commit is not None:
            before_commit(pkg)
        _newest_changed(s, pkg)
        s.commit()
    except IntegrityError:
        s.rollback()
        raise GdosError(
            ErrorCode.ALREADY_EXISTS, "a package with this name and version was just uploaded"
        ) from None
    except BaseException:
        s.rollback()
        raise
    finally:
        if path.exists():
            os.unlink(path)
    log.info("package %s %s registered (%d bytes)", pkg.name, pkg.version, size)
    return pkg


def _newest_changed(s: Session, pkg: models.Package) -> None:
    """Instances of modules on the newest version of this package now differ from it."""
    modules = s.scalars(
        select(models.Module.id).where(
            models.Module.package_name == pkg.name, models.Module.version.is_(None)
        )
    )
    instance_settings.refresh_drift(s, instance_settings.of_modules(s, modules))


async def delete_package(s: Session, store: PackageStore, pkg: models.Package) -> None:
    lock_row(s, pkg)  # a module or deploy resolving it on another master finishes first
    users = s.scalars(
        select(models.Module.id).where(
            models.Module.package_name == pkg.name,
            (models.Module.version == pkg.version) | (models.Module.version.is_(None)),
        )
    ).all()
    pinned = s.scalars(select(models.Instance.id).where(models.Instance.package_id == pkg.id)).all()
    newest_users = []
    if users:
        # A module with version null uses the newest; it only blocks deleting that one.
        newest = s.scalars(
            select(models.Package)
            .where(models.Package.name == pkg.name)
            .order_by(models.Package.uploaded_at.desc())
            .limit(1)
        ).first()
        for mod_id in users:
            mod = s.get(models.Module, mod_id)
            if mod is not None and (mod.version == pkg.version or (newest and newest.id == pkg.id)):
                newest_users.append(mod_id)
    if newest_users or pinned:
        raise GdosError(
            ErrorCode.IN_USE,
            f"package {pkg.name} {pkg.version} is in use by modules or instances; remove them first",
            {"modules": newest_users, "instances": list(pinned)},
        )
    sha = pkg.sha256
    s.delete(pkg)
    s.commit()
    still_used = s.scalars(select(models.Package.id).where(models.Package.sha256 == sha)).first()
    if still_used is None:
        await store.delete(sha)
