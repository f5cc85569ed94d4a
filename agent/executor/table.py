"""The instances this agent manages: the table, its saves to the state file and its reports to
the master; what the supervisor's commands and its watch over running processes share."""

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.executor import releases, runas
from agent.executor.managed import Managed
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import InstanceReport, InstanceSpec

log = logging.getLogger(__name__)

Report = Callable[[InstanceReport], None]
# How long a change that need not be saved at once waits for the others of its burst (the
# exits of a batch stop): they are then written together, once.
SAVE_SOON = 0.5


class InstanceTable:
    def __init__(
        self, work_dir: Path, state: StateFile, report: Report, default_user: str | None
    ) -> None:
        self.work_dir = work_dir
        self.default_user = default_user  # None: the agent's own user (--default-user)
        self.state = state
        self.on_report = report
        self.instances: dict[str, Managed] = {}
        state.collect = lambda: {i: m.record() for i, m in self.instances.items()}
        self._background: set[asyncio.Task[Any]] = set()
        self._soon: asyncio.TimerHandle | None = None

    def instance_dir(self, instance_id: str) -> Path:
        return self.work_dir / instance_id

    def app_dir(self, m: Managed) -> Path | None:
        """The folder of `m`'s current release (None for an adopted process). Computed from
        the state, not through the `current` pointer, so that both pointer forms work."""
        if m.adopted or m.release is None:
            return None
        return releases.folder(self.instance_dir(m.id), m.release)

    async def commit(self, m: Managed | None = None, durable: bool = True) -> None:
        """Save the table, then tell the master about `m`. Changes of a process's state need
        not be `durable` (see StateFile.save); what is deployed here must be.

        A save that fails (a full disk) raises a storage error that says so, and `m` is
        reported anyway: the change has happened (a process runs), only not on disk yet; the
        next save that succeeds writes the whole table, this change included."""
        try:
            await self.state.save(durable)
        except OSError as exc:
            if m is not None:
                self.on_report(m.report())
            raise self.not_saved(
                exc, "; the change is kept in memory and saved with the next save that succeeds"
            ) from exc
        if m is not None:
            self.on_report(m.report())

    def save_soon(self) -> None:
        """Save within `SAVE_SOON` seconds, with every change made meanwhile: for a change the
        next agent recovers without its save (see `Watch`), so nothing waits for it."""
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(SAVE_SOON, self._save_now)

    def save_pending(self) -> bool:
        return self._soon is not None

    def _save_now(self) -> None:
        self._soon = None
        self.spawn_bg(self._save_logged())

    async def _save_logged(self) -> None:
        try:
            await self.state.save(durable=False)
        except OSError as exc:  # the next save that succeeds writes the change
            log.warning("%s", self.not_saved(exc).message)

    def not_saved(self, exc: OSError, then: str = "") -> GdosError:
        full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        return GdosError(
            ErrorCode.STORAGE_FULL if full else ErrorCode.STORAGE_ERROR,
            f"the agent could not save its state in {self.work_dir}: {exc.strerror or exc}{then}",
        )

    def reports(self) -> list[InstanceReport]:
        return [m.report() for m in self.instances.values()]

    def get(self, instance_id: str) -> Managed:
        m = self.instances.get(instance_id)
        if m is None:
            raise GdosError(ErrorCode.NOT_FOUND, f"this node has no instance {instance_id}")
        return m

    def spawn_bg(self, coro: Awaitable[Any]) -> None:
        """Run `coro` as a task the agent's shutdown cancels."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel_background(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        for task in list(self._background):
            task.cancel()

    def account(self, spec: InstanceSpec, manifest: Manifest | None) -> runas.Account:
        """Who the instance's processes run as; GdosError when that account cannot be used."""
        user, group = runas.wanted(spec, manifest)
        return runas.resolve(user, group, self.default_user)

    def managed_pids(self) -> set[int]:
        return {m.pid for m in self.instances.values() if m.pid is not None}
