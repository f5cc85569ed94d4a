"""One download per package at a time on a node: instances that prepare (or deploy) the same
package together share it, each then unpacking from its own link to the one file. A rollout of
four instances of one module on a node fetches the package once, not four times."""

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.executor.deploy import Fetch
from protocol.messages import PackageRef

log = logging.getLogger(__name__)

FOLDER = ".downloads"  # in the agent's work dir, so a link to it is on the same filesystem


@dataclass
class _Shared:
    task: asyncio.Future[None]
    path: Path
    users: int = 0


class Downloads:
    def __init__(self, fetch: Fetch, work_dir: Path) -> None:
        self.fetch = fetch
        self.folder = work_dir / FOLDER
        self._shared: dict[str, _Shared] = {}

    def clean(self) -> None:
        """At the agent's start: what a download cut by its end left."""
        shutil.rmtree(self.folder, ignore_errors=True)

    async def _download(self, ref: PackageRef, path: Path) -> None:
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        await self.fetch(ref, path)

    async def get(self, ref: PackageRef, dest: Path) -> None:
        """The package at `dest` (sha256 checked), downloaded once for all who ask meanwhile."""
        entry = self._shared.get(ref.sha256)
        if entry is None:  # registered before any await: who comes next shares it
            path = self.folder / f"{ref.sha256}.zip"
            entry = _Shared(asyncio.ensure_future(self._download(ref, path)), path)
            self._shared[ref.sha256] = entry
        entry.users += 1
        try:
            await asyncio.shield(entry.task)  # one caller cancelled leaves the others' download
            await asyncio.to_thread(_link_or_copy, entry.path, dest)
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._shared.pop(ref.sha256, None)
                entry.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await entry.task
                await asyncio.to_thread(entry.path.unlink, missing_ok=True)


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(src, dest)
