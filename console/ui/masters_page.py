"""The masters sharing the database: which is online, which leads, how many nodes each holds,
and which one this console is on."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from console.services.masters import MastersService
from console.services.session import Session
from console.ui import common
from console.ui.table_panel import TablePanel


class MastersPage(QWidget):
    def __init__(
        self, masters: MastersService, session: Session, settings: QSettings | None = None
    ) -> None:
        super().__init__()
        self.masters = masters
        self.session = session
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Masters"))
        self.table = TablePanel(masters.model, "masters", settings)
        self.refresh_action = self.table.add_action(
            "Refresh", masters.reload, needs_selection=False
        )
        self.table.notice.follow(masters.availability, "masters")
        self.hint = QLabel()
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        lay.addWidget(self.table, 1)
        session.master_changed.connect(lambda url, _id: self._describe())
        self._describe()

    def _describe(self) -> None:
        """Where this console is, and where it goes when that master stops answering."""
        text = (
            "Masters sharing one database serve the same fleet; each node is held by one of them. "
        )
        session = self.session
        if session.several:
            text += (
                f"This console knows {len(session.urls)} masters ({', '.join(session.urls)}) and "
                "moves to the next by itself when the one it is on stops answering."
            )
        else:
            text += (
                "This console was given one master URL; give several, separated by commas, to "
                "have it move by itself when its master stops answering."
            )
        self.hint.setText(text)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.masters.watch(True)

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.masters.watch(False)
