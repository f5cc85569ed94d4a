"""The master's backups: list, create, download, delete, restore."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal

from console import fmt
from console.message import action, async_slot, info
from console.models.tables import BackupTableModel
from console.services.feature import FeatureService
from console.services.session import Session


class BackupsService(FeatureService):
    restored = Signal(dict)  # RestoreOut: the master now serves the backup's state

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = BackupTableModel(self)

    @async_slot()
    @action("listing backups")
    async def reload(self) -> None:
        rows = await self.guarded("backups", self.session.require().backups())
        if rows is not None:
            self.model.set_rows(r.model_dump() for r in rows)

    @async_slot()
    @action("creating a backup")
    async def create(self) -> str | None:
        b = await self.guarded("backups", self.session.require().create_backup())
        if b is None:
            return None
        self.model.update(b.model_dump())
        info(f"backup {b.id} created ({fmt.size(b.size)})")
        return b.id

    @async_slot(str, str)
    @action("downloading the backup")
    async def download(self, backup_id: str, path: str) -> None:
        await self.session.require().download_backup(backup_id, Path(path))
        info(f"backup saved to {path}")

    @async_slot(str)
    @action("deleting the backup")
    async def delete(self, backup_id: str) -> None:
        await self.session.require().delete_backup(backup_id)
        self.model.remove(backup_id)

    @async_slot(str)
    @action("restoring the backup")
    async def restore(self, backup_id: str) -> str:
        out = await self.session.require().restore_backup(backup_id)
        info(
            f"backup {out.restored} restored; the state before it is kept as backup "
            f"{out.safety_backup}"
        )
        self.restored.emit(out.model_dump())
        self.session.resynced.emit()  # everything may have changed: reload it all
        return out.safety_backup
