"""Systems -> modules -> instances, as a tree the systems page shows and edits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel

from console.models.cells import KEY_ROLE, STATE_COLORS
from console.models.rows import InstanceRow, SystemRow

KIND_ROLE = KEY_ROLE + 10
ROW_ROLE = KEY_ROLE + 11
HEADERS = ("Name", "Details", "State")


class SystemTreeModel(QStandardItemModel):
    """Built from `GET /systems/{id}` bodies; instance rows are updated in place from events."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setHorizontalHeaderLabels(list(HEADERS))
        self._items: dict[tuple[str, str], QStandardItem] = {}

    def item_for(self, kind: str, key: str) -> QStandardItem | None:
        return self._items.get((kind, key))

    def set_systems(self, systems: list[SystemRow]) -> None:
        # Rows only: clear() would drop the columns too, and views would lose their header setup.
        self.removeRows(0, self.rowCount())
        self._items.clear()
        for detail in sorted(systems, key=lambda s: str(s.get("name", ""))):
            self._add_system(detail)

    def upsert_system(self, detail: SystemRow) -> None:
        """Replace one system's subtree (after an edit, a deploy, or a `system` event)."""
        old = self._items.get(("system", str(detail["id"])))
        if old is not None and "modules" not in detail:
            old.setText(str(detail.get("name", old.text())))
            self._cell(old, 1).setText(str(detail.get("description", "")))
            old.setData({**(old.data(ROW_ROLE) or {}), **detail}, ROW_ROLE)
            return
        if old is not None:
            self._drop(old)
            self.removeRow(old.row())
        self._add_system(detail)

    def remove_system(self, system_id: str) -> None:
        item = self._items.get(("system", system_id))
        if item is not None:
            self._drop(item)
            self.removeRow(item.row())

    def update_instance(self, row: InstanceRow) -> bool:
        """Update an instance's state in place; False when the tree does not hold it yet."""
        item = self._items.get(("instance", str(row["id"])))
        if item is None:
            return False
        if row.get("deleted"):
            self._drop(item)
            parent = item.parent()
            if parent is not None:
                parent.removeRow(item.row())
            return True
        merged: InstanceRow = {**(item.data(ROW_ROLE) or {}), **row}
        item.setData(merged, ROW_ROLE)
        self._set_state(self._cell(item, 2), str(merged.get("state", "")))
        self._cell(item, 1).setText(_instance_detail(merged))
        return True

    def system_ids(self) -> list[str]:
        return [k for (kind, k) in self._items if kind == "system"]

    # -- building -------------------------------------------------------------------------

    def _add_system(self, detail: SystemRow) -> None:
        sys_item = self._row(
            "system", detail, str(detail.get("name")), str(detail.get("description", "")), ""
        )
        self.appendRow(self._with_cells(sys_item))
        instances = list(detail.get("instances", []))
        for mod in detail.get("modules", []):
            version = mod.get("version") or "newest"
            mod_item = self._row(
                "module",
                mod,
                str(mod.get("name")),
                f"{mod.get('package')} @ {version} · order {mod.get('start_order')}",
                "",
            )
            sys_item.appendRow(self._with_cells(mod_item))
            for inst in instances:
                if inst.get("module_id") == mod.get("id"):
                    mod_item.appendRow(self._with_cells(self._instance_item(inst)))
        for inst in instances:  # adopted instances belong to no module
            if not inst.get("module_id"):
                sys_item.appendRow(self._with_cells(self._instance_item(inst)))

    def _instance_item(self, inst: InstanceRow) -> QStandardItem:
        item = self._row(
            "instance", inst, str(inst.get("name")), _instance_detail(inst), str(inst.get("state"))
        )
        return item

    def _row(
        self, kind: str, row: Mapping[str, Any], name: str, detail: str, state: str
    ) -> QStandardItem:
        item = QStandardItem(name)
        item.setEditable(False)
        item.setData(kind, KIND_ROLE)
        item.setData(str(row["id"]), KEY_ROLE)
        item.setData(dict(row), ROW_ROLE)
        item.setData([detail, state], KEY_ROLE + 20)
        self._items[(kind, str(row["id"]))] = item
        return item

    def _with_cells(self, item: QStandardItem) -> list[QStandardItem]:
        detail, state = item.data(KEY_ROLE + 20)
        cells = [item]
        for text in (detail, state):
            cell = QStandardItem(text)
            cell.setEditable(False)
            cell.setData(item.data(KIND_ROLE), KIND_ROLE)
            cell.setData(item.data(KEY_ROLE), KEY_ROLE)
            cells.append(cell)
        self._set_state(cells[2], state)
        return cells

    def _cell(self, item: QStandardItem, column: int) -> QStandardItem:
        parent = item.parent() or self.invisibleRootItem()
        cell = parent.child(item.row(), column)
        assert cell is not None
        return cell

    @staticmethod
    def _set_state(cell: QStandardItem, state: str) -> None:
        if cell.text() != state:
            cell.setText(state)
        color = STATE_COLORS.get(state)
        if color:
            cell.setForeground(QBrush(QColor(color)))

    def _drop(self, item: QStandardItem) -> None:
        self._items.pop((str(item.data(KIND_ROLE)), str(item.data(KEY_ROLE))), None)
        for r in range(item.rowCount()):
            child = item.child(r, 0)
            if child is not None:
                self._drop(child)


def _instance_detail(inst: InstanceRow) -> str:
    parts = [f"on {inst.get('node_name') or inst.get('node_id')}"]
    if inst.get("pid"):
        parts.append(f"pid {inst['pid']}")
    if inst.get("version"):
        parts.append(f"v{inst['version']}")
    return " · ".join(parts)
