"""Fetch a package, check its sha256, and unpack it safely as a release of an instance."""

import asyncio
import errno
import logging
import os
import random
import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from agent import logs
from agent.executor import releases, runas
from agent.executor.releases import Release
from agent.flags import DEFAULT_DOWNLOAD_RETRY_SECONDS
from agent.hostinfo import os_name
from agent.http import Http, HttpError, Progress
from protocol.archive import extract_package
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import PackageRef

log = logging.getLogger(__name__)

Fetch = Callable[[PackageRef, Path], Awaitable[None]]  # a package to a local file


# Retries of a package download: exponential backoff with jitter, for at most --download-retry-seconds.
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
RETRY_JITTER = 0.2  # each pause is +-20 %
READ_TIMEOUT = 30.0  # a connection that delivers nothing for this long is cut and resumed


def retryable(exc: HttpError) -> bool:
    """Worth another try: no answer at all, or an answer that says "later"."""
    return exc.status is None or exc.status in (408, 425, 429) or exc.status >= 500


async def download(
    http: Http,
    master_url: str,
    secret: str,
    ref: PackageRef,
    dest: Path,
    retry_seconds: float = DEFAULT_DOWNLOAD_RETRY_SECONDS,
) -> None:
    """Stream the package to `dest`, hashing on the way; a mismatch removes the file.

    A dropped connection or a store that is down is retried (backoff with jitter), resuming
    with a Range request where the store allows, until `retry_seconds` have passed; the final
    error names the store (the master, or the object store a presigned URL points to)."""
    url = urljoin(master_url.rstrip("/") + "/", ref.url.lstrip("/")) if ref.needs_auth else ref.url
    headers = {"Authorization": f"Bearer {secret}"} if ref.needs_auth else {}
    master_host = urlsplit(master_url).netloc
    # The query of a presigned URL is a credential: log where from, not the URL.
    presigned = "" if ref.needs_auth else " (presigned URL)"
    log.info(
        "fetching package %s %s from %s%s",
        ref.name,
        ref.version,
        _store(url, master_host),
        presigned,
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    progress = Progress()
    delay, tries = RETRY_FIRST, 0
    while True:
        tries += 1
        left = began + retry_seconds - loop.time()
        try:
            await http.fetch_into(url, headers, dest, progress, max(1.0, min(READ_TIMEOUT, left)))
            break
        except HttpError as exc:
            store = _store(progress.source or url, master_host)
            left = began + retry_seconds - loop.time()
            if not retryable(exc) or left <= 0:
                dest.unlink(missing_ok=True)
                raise _gave_up(ref, store, exc, tries, loop.time() - began) from None
            pause = min(left, delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))
            log.warning(
                "download of %s %s from %s: %s; retry %d in %.1f s (from byte %d)",
                ref.name,
                ref.version,
                store,
                exc,
                tries,
                pause,
                progress.got,
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, RETRY_MAX)
        except OSError as exc:
            dest.unlink(missing_ok=True)
            raise write_error(exc, f"cannot write package {ref.name} {ref.version}") from None
    _check_digest(ref, dest, progress.sha256.hexdigest())


def write_error(exc: OSError, what: str) -> GdosError:
    """A failed write on the node: `storage_full` when the disk (or a quota) is full."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return GdosError(
            ErrorCode.STORAGE_FULL, f"{what}: the disk of this node is full ({exc.strerror})"
        )
    return GdosError(ErrorCode.DEPLOY_FAILED, f"{what}: {exc.strerror or exc}")


def _gave_up(ref: PackageRef, store: str, exc: HttpError, tries: int, spent: float) -> GdosError:
    over = f" ({tries} tries over {spent:.0f} s)" if tries > 1 else ""
    return GdosError(
        ErrorCode.DEPLOY_FAILED,
        f"download of {ref.name} {ref.version} from {store} failed{over}: {exc}",
        {"store": store, "tries": tries},
    )


def _check_digest(ref: PackageRef, dest: Path, digest: str) -> None:
    if digest != ref.sha256:
        dest.unlink(missing_ok=True)
        raise GdosError(
            ErrorCode.CHECKSUM_MISMATCH,
            f"package {ref.name} {ref.version} arrived corrupted: sha256 {digest} != {ref.sha256}",
        )


def _store(url: str, master_host: str) -> str:
    host = urlsplit(url).netloc if "://" in url else url
    return f"the master ({host})" if host == master_host else f"the object store at {host}"


async def install(
    fetch: Fetch,
    package: PackageRef,
    instance_dir: Path,
    log_roots: tuple[Path, ...],
    account: Callable[[Manifest], runas.Account],
) -> tuple[Release, runas.Account]:
    """Fetch, check and unpack a package as a release of the instance, beside any other: its
    shared paths linked, its folders made ready for the account it runs as (returned with it).
    Nothing of a release that fails is left. Raises GdosError."""
    name = releases.release_name(package)
    target = releases.folder(instance_dir, name)
    zip_path = releases.staging(instance_dir, name)
    what = f"cannot unpack {package.name} {package.version}"
    try:
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        await fetch(package, zip_path)
        manifest = await asyncio.to_thread(unpack, zip_path, target)
    except OSError as exc:
        raise write_error(exc, what) from None
    finally:
        await asyncio.to_thread(zip_path.unlink, missing_ok=True)
    try:
        if manifest.os and manifest.os != os_name():
            raise GdosError(
                ErrorCode.OS_MISMATCH,
                f"package {package.name} is for {manifest.os}; this node runs {os_name()}",
            )
        logs.check_log_roots(manifest.log_paths, log_roots, instance_dir)
        run_as = account(manifest)
        await asyncio.to_thread(_settle, instance_dir, target, manifest, run_as)
    except BaseException as exc:
        await asyncio.to_thread(releases.remove_release, instance_dir, name)
        if isinstance(exc, OSError):
            raise write_error(exc, what) from None
        raise
    return Release(name, package, releases.shared(manifest)), run_as


def _settle(instance_dir: Path, release: Path, manifest: Manifest, account: runas.Account) -> None:
    shared = releases.link_shared(instance_dir, release, manifest)
    runas.prepare_folders(instance_dir, account, manifest, release, shared)


def unpack(zip_path: Path, app_dir: Path) -> Manifest:
    """Extract into `<app_dir>.tmp`, then rename into place: never a half-unpacked app."""
    tmp = app_dir.with_name(app_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        manifest = extract_package(zip_path, tmp)
        entry = tmp / manifest.entrypoint
        for candidate in (entry, entry.with_name(entry.name + ".exe")):
            if candidate.is_file() and os.name == "posix":
                mode = candidate.stat().st_mode
                candidate.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        if manifest.stop_entrypoint:
            stop = tmp / manifest.stop_entrypoint
            if stop.is_file() and os.name == "posix":
                stop.chmod(stop.stat().st_mode | stat.S_IXUSR)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if app_dir.exists():
        shutil.rmtree(app_dir)
    os.replace(tmp, app_dir)
    return manifest
