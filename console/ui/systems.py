"""Systems: the systems -> modules -> instances tree; create and edit; deploy; start/stop all."""

from __future__ import annotations

from typing import Any, cast

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QProgressBar,
    QSplitter,
    QTableView,
    QToolBar,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from console.models.cells import KEY_ROLE
from console.models.rows import ModuleRow, SystemRow
from console.models.systems import KIND_ROLE, ROW_ROLE
from console.services.fleet import FleetService
from console.services.operations import OperationsService
from console.ui import common
from console.ui.dialogs.module import ModuleDialog
from console.ui.dialogs.node_picker import NodePicker
from console.ui.dialogs.system import SystemDialog


class SystemsPage(QWidget):
    def __init__(self, fleet: FleetService, operations: OperationsService) -> None:
        super().__init__()
        self.fleet, self.operations = fleet, operations
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Systems"))
        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        lay.addWidget(self.toolbar)
        self.new_action = self._action("New system…", self.new_system, "Ctrl+N", always=True)
        self.edit_action = self._action("Edit…", self.edit, "F2")
        self.add_module_action = self._action("Add module…", self.add_module, "Ctrl+M")
        self.deploy_action = self._action("Deploy to nodes…", self.deploy, "Ctrl+D")
        self.toolbar.addSeparator()
        self.start_action = self._action("Start system", self.start_system, "Ctrl+Shift+S")
        self.stop_action = self._action("Stop system", self.stop_system, "Ctrl+Shift+X")
        self.toolbar.addSeparator()
        self.delete_action = self._action("Delete", self.delete, "Del")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_tree(fleet))
        split.addWidget(self._build_operation(operations))
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)
        operations.changed.connect(self._operation)
        self._enable()

    def _build_tree(self, fleet: FleetService) -> QTreeView:
        """The systems and their modules; what was selected stays selected through rebuilds."""
        self.tree = QTreeView()
        self.tree.setObjectName("systemsTree")
        self.tree.setModel(fleet.systems)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setAlternatingRowColors(True)
        # Systems trees are small (dozens of rows): sizing to contents is cheap and always right.
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        self.tree.doubleClicked.connect(lambda _: self.edit())
        self.tree.selectionModel().selectionChanged.connect(lambda *_: self._enable())
        fleet.systems.rowsInserted.connect(lambda *_: self.tree.expandAll())
        fleet.systems.modelReset.connect(lambda: self.tree.expandAll())
        # A system's subtree is rebuilt when it changes (events, reloads): what was selected in
        # it stays selected.
        self._kept: tuple[str, str] = ("", "")
        fleet.systems.rowsAboutToBeRemoved.connect(lambda *_: self._keep())
        fleet.systems.modelAboutToBeReset.connect(self._keep)
        fleet.systems.rowsInserted.connect(lambda *_: self._reselect())
        fleet.systems.modelReset.connect(self._reselect)
        return self.tree

    def _build_operation(self, operations: OperationsService) -> QWidget:
        """The running operation: its label, progress bar and steps."""
        ops = QWidget()
        ops_lay = QVBoxLayout(ops)
        ops_lay.setContentsMargins(0, 0, 0, 0)
        self.op_label = QLabel("No operation running.")
        self.op_label.setObjectName("sectionTitle")
        self.op_bar = QProgressBar()
        self.op_bar.setRange(0, 1)
        self.op_bar.setValue(0)
        self.steps = QTableView()
        self.steps.setObjectName("operationSteps")
        self.steps.setModel(operations.steps)
        self.steps.verticalHeader().hide()
        self.steps.horizontalHeader().setStretchLastSection(True)
        self.steps.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.steps.verticalHeader().setDefaultSectionSize(24)
        self.steps.setColumnWidth(0, 220)
        self.steps.setColumnWidth(1, 140)
        self.steps.setColumnWidth(2, 60)
        self.steps.setColumnWidth(3, 120)
        self.steps.setColumnWidth(4, 150)
        self.steps.setColumnWidth(5, 150)
        for w in (self.op_label, self.op_bar, self.steps):
            ops_lay.addWidget(w)
        return ops

    def _action(self, text: str, slot: Any, shortcut: str, always: bool = False) -> QAction:
        act = common.make_action(self, text, slot, shortcut)
        act.setProperty("always", always)
        self.toolbar.addAction(act)
        return act

    # -- selection ------------------------------------------------------------------------

    def selected(self) -> tuple[str, str, dict[str, Any]]:
        """(kind, id, row) of the selected node of the tree, or ("", "", {})."""
        idx = self.tree.selectionModel().currentIndex()
        rows = self.tree.selectionModel().selectedRows()
        if rows:
            idx = rows[0]
        if not idx.isValid():
            return "", "", {}
        idx = idx.siblingAtColumn(0)
        return str(idx.data(KIND_ROLE)), str(idx.data(KEY_ROLE)), dict(idx.data(ROW_ROLE) or {})

    def system_of_selection(self) -> str:
        kind, key, row = self.selected()
        if kind == "system":
            return key
        return str(row.get("system_id", ""))

    def select(self, kind: str, key: str) -> None:
        item = self.fleet.systems.item_for(kind, key)
        if item is not None:
            idx = item.index()
            self.tree.selectionModel().setCurrentIndex(
                idx,
                self.tree.selectionModel().SelectionFlag.ClearAndSelect
                | self.tree.selectionModel().SelectionFlag.Rows,
            )
            self.tree.scrollTo(idx)

    def _keep(self) -> None:
        kind, key, _ = self.selected()
        if kind:
            self._kept = (kind, key)

    def _reselect(self) -> None:
        kind, key = self._kept
        if kind and not self.selected()[0] and self.fleet.systems.item_for(kind, key):
            self.select(kind, key)
        if self.selected()[0]:
            self._kept = ("", "")

    def _enable(self) -> None:
        kind, _, _ = self.selected()
        self.edit_action.setEnabled(kind in ("system", "module"))
        self.add_module_action.setEnabled(kind in ("system", "module"))
        self.deploy_action.setEnabled(kind == "module")
        self.start_action.setEnabled(bool(kind))
        self.stop_action.setEnabled(bool(kind))
        self.delete_action.setEnabled(bool(kind))

    # -- actions --------------------------------------------------------------------------

    # Each dialog stays open until the master accepts what it sends; the `create_*`/`deploy_to`
    # functions do the work and are what tests call directly.

    def new_system(self) -> SystemDialog:
        dlg = SystemDialog(parent=self)
        dlg.submit = lambda v: self.create_system(v["name"], v["description"])
        dlg.submitted.connect(lambda system_id: self.select("system", str(system_id)))
        dlg.open()
        return dlg

    def create_system(self, name: str, description: str = "") -> Any:
        return self.fleet.create_system(name, description)

    def edit(self) -> SystemDialog | ModuleDialog | None:
        kind, key, row = self.selected()
        if kind == "system":
            dlg = SystemDialog(cast(SystemRow, row), self)
            dlg.submit = lambda v: self.fleet.update_system(key, v["description"])
            dlg.open()
            return dlg
        if kind == "module":
            mdlg = ModuleDialog(self._package_versions(), cast(ModuleRow, row), self)
            system_id = str(row.get("system_id"))
            mdlg.submit = lambda v: self.fleet.update_module(
                system_id, key, {k: v[k] for k in ("version", "start_order", "env", "args")}
            )
            mdlg.open()
            return mdlg
        return None

    def add_module(self) -> ModuleDialog | None:
        system_id = self.system_of_selection()
        if not system_id:
            return None
        dlg = ModuleDialog(self._package_versions(), parent=self)
        dlg.submit = lambda v: self.fleet.create_module(system_id, v)
        dlg.submitted.connect(lambda module_id: self.select("module", str(module_id)))
        dlg.open()
        return dlg

    def create_module(self, fields: dict[str, Any]) -> Any:
        """A module in the system of the selection."""
        system_id = self.system_of_selection()
        return self.fleet.create_module(system_id, fields) if system_id else None

    def deploy(self) -> NodePicker | None:
        kind, key, row = self.selected()
        if kind != "module":
            return None
        dlg = NodePicker(f"Deploy {row.get('name')} to…", self.fleet.nodes.rows(), parent=self)
        dlg.submit = lambda v: self.fleet.deploy(key, v["node_ids"])
        dlg.open()
        return dlg

    def deploy_to(self, node_ids: list[str]) -> Any:
        """Instances of the selected module on these nodes."""
        kind, key, _ = self.selected()
        return self.fleet.deploy(key, node_ids) if kind == "module" else None

    def start_system(self) -> Any:
        system_id = self.system_of_selection()
        return self.operations.start_system(system_id) if system_id else None

    def stop_system(self) -> Any:
        system_id = self.system_of_selection()
        if not system_id:
            return None
        name = self.fleet.system_names.get(system_id, system_id)
        return common.confirm(
            self,
            "Stop system",
            f"Stop every instance of {name}, in reverse start order?",
            lambda: self.operations.stop_system(system_id),
        )

    def delete(self) -> Any:
        kind, key, row = self.selected()
        name = row.get("name", key)
        if kind == "system":
            return common.confirm(
                self,
                "Delete system",
                f"Delete system {name} and its modules?",
                lambda: self.fleet.delete_system(key),
            )
        if kind == "module":
            system_id = str(row.get("system_id"))
            return common.confirm(
                self,
                "Delete module",
                f"Delete module {name}?",
                lambda: self.fleet.delete_module(system_id, key),
            )
        if kind == "instance":
            return common.confirm(
                self,
                "Destroy instance",
                f"Destroy {name}: stop it and remove its files from the node?",
                lambda: self.fleet.destroy_instances([key]),
            )
        return None

    def _package_versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.fleet.packages.rows():
            out.setdefault(str(r.get("name")), []).append(str(r.get("version")))
        return out

    def _operation(self, system_id: str, state: str, done: int, total: int) -> None:
        op = self.operations.current
        if op is None:
            return
        name = self.fleet.system_names.get(system_id, system_id)
        self.op_bar.setRange(0, max(1, total))
        self.op_bar.setValue(done)
        words = {"running": "in progress", "succeeded": "done", "failed": "failed"}.get(
            state, state
        )
        level = f", start order {op['level']}" if state == "running" and op.get("level") else ""
        by = f" by {op['actor']}" if op.get("actor") else ""
        text = f"{op.get('kind', 'operation')} {name}{by}: {words} ({done} of {total} steps{level})"
        if state == "failed" and op.get("error"):
            text += f": {op['error']}"
        self.op_label.setText(text)

    def current_index(self) -> QModelIndex:
        return self.tree.currentIndex()
