"""Fetch a package, check its sha256, and unpack it safely into the instance directory."""

import logging
import os
import shutil
import stat
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from agent.http import Http, HttpError
from protocol.archive import extract_package
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import PackageRef

log = logging.getLogger(__name__)


async def download(http: Http, master_url: str, secret: str, ref: PackageRef, dest: Path) -> None:
    """Stream the package to `dest`, hashing on the way; a mismatch removes the file."""
    url = urljoin(master_url.rstrip("/") + "/", ref.url.lstrip("/")) if ref.needs_auth else ref.url
    headers = {"Authorization": f"Bearer {secret}"} if ref.needs_auth else {}
    # The query of a presigned URL is a credential: log where from, not the URL.
    source = "the master" if ref.needs_auth else f"{urlsplit(url).netloc} (presigned URL)"
    log.info("fetching package %s %s from %s", ref.name, ref.version, source)
    try:
        digest = await http.download(url, headers, dest)
    except HttpError as exc:
        raise GdosError(
            ErrorCode.DEPLOY_FAILED, f"download of {ref.name} {ref.version} failed: {exc}"
        ) from None
    except OSError as exc:
        raise GdosError(ErrorCode.DEPLOY_FAILED, f"cannot write {ref.name}: {exc}") from None
    if digest != ref.sha256:
        dest.unlink(missing_ok=True)
        raise GdosError(
            ErrorCode.CHECKSUM_MISMATCH,
            f"package {ref.name} {ref.version} arrived corrupted: sha256 {digest} != {ref.sha256}",
        )


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
