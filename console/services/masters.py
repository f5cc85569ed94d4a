"""The masters sharing the database (`GET /api/v1/masters`): listed on each (re)connect and, while
the Masters page is shown, every few seconds; the one this console is on is marked."""

from __future__ import annotations

from PySide6.QtCore import QTimer

from console.message import action, async_slot
from console.models.tables import MasterTableModel
from console.services.feature import FeatureService
from console.services.session import Session

REFRESH_MS = 5000


class MastersService(FeatureService):
    def __init__(self, session: Session, refresh_ms: int = REFRESH_MS) -> None:
        super().__init__(session)
        self.model = MasterTableModel(self)
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(lambda: self.reload() if self.session.connected else None)
        session.resynced.connect(self.reload)
        session.logged_out.connect(lambda: self.model.set_rows([]))

    def watch(self, on: bool) -> None:
        """Refresh every few seconds while a view shows the list (now, too, when it starts)."""
        if on and not self._timer.isActive():
            self._timer.start()
            if self.session.connected:
                self.reload()
        elif not on:
            self._timer.stop()

    @async_slot()
    @action("listing the masters")
    async def reload(self) -> None:
        client = self.session.require()
        masters = await self.guarded("masters", client.masters())
        if masters is None or client is not self.session.client:
            return
        rows = [m.model_dump() for m in masters]
        if rows:  # the answering master comes first
            self.session.set_master_id(str(rows[0]["id"]))
        for row in rows:
            row["current"] = row["id"] == self.session.master_id
        self.model.set_rows(rows)
