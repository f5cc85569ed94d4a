"""Package uploads with progress: resumable (tus) when the master offers it, one-shot otherwise.

A tus upload's URL is remembered (QSettings, keyed by the file's path, size and mtime), so an
upload cut by a dropped connection resumes from the server's offset, also after a console
restart; the one-shot path retries from the beginning.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from console.client import ClientError
from console.message import async_slot, describe, info, report
from console.services.session import Session


def _resume_key(path: Path) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()
    return "uploads/" + hashlib.sha256(ident).hexdigest()[:32]


class UploadService(QObject):
    progress = Signal(str, int, int)  # file name, bytes sent, total
    finished = Signal(str, bool, str)  # file name, ok, message
    mode_known = Signal(str)  # "resumable" or "one-shot"

    def __init__(self, session: Session, settings: QSettings | None = None) -> None:
        super().__init__()
        self.session = session
        self.settings = settings
        self.active: set[str] = set()
        self._last_emit = 0.0

    @async_slot(list)
    async def upload(self, paths: list[str]) -> int:
        """Upload files one after the other; returns how many made it."""
        ok = 0
        for p in paths:
            if await self.upload_one(Path(p)):
                ok += 1
        return ok

    async def upload_one(self, path: Path) -> bool:
        name = path.name
        self.active.add(name)
        try:
            client = self.session.require()
            if not path.is_file():
                raise ClientError(f"{path} is not a file", code="bad_file")
            emit = self._throttled(name)
            if await client.tus_available():
                self.mode_known.emit("resumable")
                key = _resume_key(path)
                resume = self._setting(key)
                try:
                    pkg = await client.tus_upload(
                        path,
                        emit,
                        resume_url=resume,
                        on_created=lambda url: self._remember(key, url),
                    )
                except ClientError as exc:
                    if resume and exc.status in (404, 410):  # expired upload: start again
                        pkg = await client.tus_upload(
                            path, emit, on_created=lambda url: self._remember(key, url)
                        )
                    else:
                        raise
                self._forget(key)
            else:
                self.mode_known.emit("one-shot")
                pkg = await client.upload_package(path, emit)
        except Exception as exc:
            report(f"uploading {name}", exc)
            self.finished.emit(name, False, describe(exc))
            return False
        finally:
            self.active.discard(name)
        size = path.stat().st_size
        self.progress.emit(name, size, size)
        info(f"uploaded {pkg.name} {pkg.version}")
        self.finished.emit(name, True, f"{pkg.name} {pkg.version}")
        return True

    def _throttled(self, name: str) -> Callable[[int, int], None]:
        def emit(sent: int, total: int) -> None:
            now = time.monotonic()
            if now - self._last_emit >= 0.05 or sent >= total:
                self._last_emit = now
                self.progress.emit(name, sent, total)

        return emit

    def _setting(self, key: str) -> str | None:
        if self.settings is None:
            return None
        value = self.settings.value(key)
        return str(value) if value else None

    def _remember(self, key: str, url: str) -> None:
        if self.settings is not None:
            self.settings.setValue(key, url)

    def _forget(self, key: str) -> None:
        if self.settings is not None:
            self.settings.remove(key)
