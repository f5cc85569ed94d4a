"""Restoring a backup under the running master, and the command-line restore's file steps.

Live restore, in order: check the backup and prepare a migrated copy next to the database
(while the master keeps serving); hold new requests at the gate and let those in flight
finish; cancel pending agent commands and close the agent sockets; keep the current state as
a safety backup; swap the file under the same `Database` object; reopen and migrate; mark
every instance unknown; open the gate. Agents reconnect with `hello` and the orchestrator
reconciles them against the restored state. Instances a node runs that the restored state
does not know are kept running and reported (`unmanaged_instances` on the node).
"""

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from master.db import sqlite_files
from master.db.session import Database
from master.services import accounts
from protocol.errors import ErrorCode, GdosError
from protocol.rest import iso
from protocol.rest_records import BackupOut, RestoreOut

if TYPE_CHECKING:
    from master.services.wiring import Services

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0  # how long a restore waits for requests in flight
CLOSE_RESTORED = 1012  # WebSocket "service restart": the agent reconnects and says hello


class Gate:
    """Holds new requests while the database is being swapped; counts HTTP requests in flight."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.inflight = 0

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def wait_open(self, timeout: float) -> bool:
        if self._open.is_set():
            return True
        try:
            await asyncio.wait_for(self._open.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def drain(self, allowance: int, timeout: float) -> bool:
        """Wait until at most `allowance` requests are in flight (the caller's own)."""
        deadline = time.monotonic() + timeout
        while self.inflight > allowance:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def prepare_copy(src: Path, staged: Path) -> str:
    """Check `src`, copy it to `staged` and migrate the copy; returns the revision it had."""
    revision = sqlite_files.check_restorable(src, Database.known_revisions())
    try:
        sqlite_files.copy_database(src, staged)
        db = Database(f"sqlite:///{staged}")
        try:
            db.migrate()
        finally:
            db.dispose()
        sqlite_files.finalize(staged)
    except BaseException:
        for suffix in ("", *sqlite_files.SIDE_FILES):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)
        raise
    return revision


async def restore_backup(svc: "Services", backup_id: str, actor: str) -> RestoreOut:
    backups = svc.backups
    live = backups.live_file()
    if backups.restoring.locked():
        raise GdosError(ErrorCode.CONFLICT, "a restore is already running")
    async with backups.restoring:
        src = backups.path_of(backup_id)
        staged = live.with_name(f".{live.name}.restore-{secrets.token_hex(4)}")
        try:
            revision = await asyncio.to_thread(prepare_copy, src, staged)
            safety = await _swap(svc, staged, actor)
        finally:
            for suffix in ("", *sqlite_files.SIDE_FILES):
                Path(f"{staged}{suffix}").unlink(missing_ok=True)
    log.warning("restored backup %s (safety copy of the previous state: %s)", backup_id, safety.id)
    for hook in backups.restore_hooks:
        try:
            done = hook()
            if done is not None:
                await done
        except Exception:
            log.exception("a restore hook failed")
    return RestoreOut(
        restored=backup_id,
        safety_backup=safety.id,
        schema_revision=revision,
        restored_at=iso(time.time()) or "",
    )


async def _swap(svc: "Services", staged: Path, actor: str) -> BackupOut:
    """Quiesce, keep the current state as a safety backup, swap; returns the safety backup."""
    gate = svc.gate
    gate.close()
    try:
        if not await gate.drain(1, DRAIN_TIMEOUT):
            raise GdosError(
                ErrorCode.CONFLICT,
                f"other requests were still running after {DRAIN_TIMEOUT:.0f} s (an upload?); "
                "nothing was restored, retry when they are done",
            )
        # Pending commands would write their outcome into the restored state: drop them.
        await svc.orchestrator.close()
        links = list(svc.agents.links.values())
        for link in links:
            svc.agents.detach(link)
        for link in links:
            with contextlib.suppress(Exception):
                await link.channel.close(CLOSE_RESTORED, "the master restored a backup")
        # Taken now, with nothing else writing, the safety copy is exactly what is replaced.
        safety = await svc.backups.create("pre-restore", actor)
        # No await from here on: nothing else on the event loop touches the database meanwhile.
        busy = svc.db.engine.pool.checkedout()  # type: ignore[attr-defined]
        if busy:
            # A connection left open on the old file would, when it closes, delete the WAL
            # files of the new one (SQLite removes them by name). Refuse instead.
            raise GdosError(
                ErrorCode.CONFLICT,
                f"{busy} database session(s) are still open; nothing was restored, retry",
            )
        svc.db.replace_file(staged)
        with svc.db.session() as s:
            accounts.bootstrap(s, svc.settings)
        svc.orchestrator.mark_node_unknown(None)
        for node_id in {link.node_id for link in links}:
            svc.nodes.publish(node_id)
    finally:
        gate.open()
    return safety
