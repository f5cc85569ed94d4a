"""Systems: the systems -> modules -> instances tree with versions and drift; create and edit;
deploy; start/stop all; roll out, roll back and release history; an instance's settings."""

from __future__ import annotations

from typing import Any, cast

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QSplitter,
    QToolBar,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from console.models.cells import KEY_ROLE
from console.models.rows import InstanceRow, ModuleRow, SystemRow
from console.models.systems import KIND_ROLE, ROW_ROLE
from console.services.fleet import FleetService
from console.services.operations import OperationsService
from console.services.releases import ReleasesService
from console.ui import common
from console.ui.dialogs.instance_settings import InstanceSettingsDialog
from console.ui.dialogs.module import ModuleDialog
from console.ui.dialogs.node_picker import NodePicker
from console.ui.dialogs.system import SystemDialog
from console.ui.operation_panel import OperationPanel
from console.ui.release_actions import ReleaseActions


class SystemsPage(QWidget):
    def __init__(
        self, fleet: FleetService, operations: OperationsService, releases: ReleasesService
    ) -> None:
        super().__init__()
        self.fleet, self.operations, self.releases = fleet, operations, releases
        self.release_actions = ReleaseActions(self, fleet, releases)
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
        self.rollout_action = self._action("Roll out…", self.rollout, "Ctrl+Shift+O")
        self.rollback_action = self._action("Roll back…", self.rollback, "Ctrl+Shift+B")
        self.history_action = self._action("History…", self.history, "Ctrl+H")
        self.toolbar.addSeparator()
        self.delete_action = self._action("Delete", self.delete, "Del")
        # Resume and Cancel sit beside the operation they act on.
        self.resume_action = common.make_action(self, "Resume", self.resume, "Ctrl+Shift+P")
        self.cancel_action = common.make_action(
            self, "Cancel operation", self.cancel_operation, "Ctrl+Shift+C"
        )
        self.operation_panel = OperationPanel(
            fleet, operations, self.resume_action, self.cancel_action
        )
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_tree(fleet))
        split.addWidget(self.operation_panel)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)
        operations.changed.connect(lambda *_: self._enable_operation())
        operations.shown.connect(lambda _: self._enable_operation())
        self._enable()
        self._enable_operation()

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
        self.tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
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
        kind, _, row = self.selected()
        self.edit_action.setEnabled(kind in ("system", "module") or self._has_settings(kind, row))
        self.add_module_action.setEnabled(kind in ("system", "module"))
        self.deploy_action.setEnabled(kind == "module")
        self.start_action.setEnabled(bool(kind))
        self.stop_action.setEnabled(bool(kind))
        self.delete_action.setEnabled(bool(kind))
        self.rollout_action.setEnabled(kind in ("system", "module"))
        self.rollback_action.setEnabled(kind == "module")
        self.history_action.setEnabled(kind == "module" or self._has_settings(kind, row))

    @staticmethod
    def _has_settings(kind: str, row: dict[str, Any]) -> bool:
        """A deployed instance (an adopted one has no module, settings or releases)."""
        return kind == "instance" and bool(row.get("module_id")) and not row.get("adopted")

    def _enable_operation(self) -> None:
        self.resume_action.setEnabled(self.operations.can_resume())
        self.cancel_action.setEnabled(self.operations.can_cancel())

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

    def edit(self) -> SystemDialog | ModuleDialog | InstanceSettingsDialog | None:
        kind, key, row = self.selected()
        if self._has_settings(kind, row):
            return self.release_actions.settings(cast(InstanceRow, row))
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

    # -- releases -------------------------------------------------------------------------

    def rollout(self) -> Any:
        """The Roll out dialog for the selected module, or for the modules of the system."""
        kind, _, row = self.selected()
        if kind == "module":
            return self.release_actions.rollout_module(cast(ModuleRow, row))
        system_id = self.system_of_selection()
        return self.release_actions.rollout_system(system_id) if system_id else None

    def rollback(self) -> Any:
        kind, _, row = self.selected()
        return self.release_actions.rollback(cast(ModuleRow, row)) if kind == "module" else None

    def history(self) -> Any:
        kind, _, row = self.selected()
        if kind == "module":
            return self.release_actions.module_history(cast(ModuleRow, row))
        if self._has_settings(kind, row):
            return self.release_actions.instance_history(cast(InstanceRow, row))
        return None

    def resume(self) -> Any:
        op = self.operations.current
        if not self.operations.can_resume() or op is None:
            return None
        return self.operations.resume(op["id"])

    def cancel_operation(self) -> Any:
        op = self.operations.current
        if not self.operations.can_cancel() or op is None:
            return None
        kind = str(op.get("kind") or "operation")
        goes_back = kind in ("rollout", "rollback")
        return common.confirm(
            self,
            "Cancel operation",
            f"Cancel the running {kind}? "
            + (
                "What it switched goes back to the release it ran before."
                if goes_back
                else "It ends where it is; what it started or stopped stays so."
            ),
            lambda: self.operations.cancel(op["id"]),
        )

    def _package_versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.fleet.packages.rows():
            out.setdefault(str(r.get("name")), []).append(str(r.get("version")))
        return out

    def current_index(self) -> QModelIndex:
        return self.tree.currentIndex()
