"""Fetch a package, check its sha256, and unpack it safely into the instance directory."""

import asyncio
import hashlib
import os
import shutil
import stat
from pathlib import Path
from urllib.parse import urljoin

import httpx

from protocol.archive import extract_package
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import PackageRef

_CHUNK = 1 << 20


async def download(
    client: httpx.AsyncClient, master_url: str, secret: str, ref: PackageRef, dest: Path
) -> None:
    """Stream the package to `dest`, hashing on the way; a mismatch removes the file."""
    url = urljoin(master_url.rstrip("/") + "/", ref.url.lstrip("/")) if ref.needs_auth else ref.url
    headers = {"Authorization": f"Bearer {secret}"} if ref.needs_auth else {}
    h = hashlib.sha256()
    try:
        async with client.stream("GET", url, headers=headers, follow_redirects=True) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise GdosError(
                    ErrorCode.DEPLOY_FAILED,
                    f"download of {ref.name} {ref.version} failed: HTTP {resp.status_code}",
                )
            with open(dest, "wb") as f:
                async for chunk in resp.aiter_bytes(_CHUNK):
                    h.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise GdosError(ErrorCode.DEPLOY_FAILED, f"download of {ref.name} failed: {exc}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if h.hexdigest() != ref.sha256:
        dest.unlink(missing_ok=True)
        raise GdosError(
            ErrorCode.CHECKSUM_MISMATCH,
            f"package {ref.name} {ref.version} arrived corrupted: sha256 {h.hexdigest()} "
            f"!= {ref.sha256}",
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
