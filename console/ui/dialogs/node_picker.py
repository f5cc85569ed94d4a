"""Pick one or more nodes (deploy a module, adopt on a node)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from console.models.rows import NodeRow
from console.ui.dialogs.form import FieldError, Form


class NodePicker(Form):
    def __init__(
        self, title: str, nodes: list[NodeRow], multi: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(title, parent)
        self.setObjectName("nodePicker")
        self.multi = multi
        self.list = QListWidget()
        for n in nodes:
            item = QListWidgetItem(f"{n.get('hostname')}  ({n.get('status')}, {n.get('ip')})")
            item.setData(Qt.ItemDataRole.UserRole, n["id"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if len(nodes) == 1 else Qt.CheckState.Unchecked
            )
            self.list.addItem(item)
        self.add_field("node_id", "Nodes", self.list)

    def values(self) -> dict[str, Any]:
        ids = [
            str(self.list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.list.count())
            if self.list.item(i).checkState() == Qt.CheckState.Checked
        ]
        if not ids:
            raise FieldError("node_id", "tick at least one node")
        if not self.multi and len(ids) > 1:
            raise FieldError("node_id", "tick one node")
        return {"node_ids": ids}
