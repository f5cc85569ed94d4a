"""The release dialogs a page opens (Systems, Instances): Roll out, Roll back, release history
and an instance's settings, each wired to the releases service."""

from __future__ import annotations

from typing import cast

from PySide6.QtWidgets import QWidget
from shiboken6 import isValid

from console.models.rows import InstanceRow, ModuleRow
from console.services.fleet import FleetService
from console.services.releases import ReleasesService
from console.ui.dialogs.instance_settings import InstanceSettingsDialog
from console.ui.dialogs.release_history import ReleaseHistoryDialog
from console.ui.dialogs.rollback import RollbackDialog
from console.ui.dialogs.rollout import ModuleChoice, RolloutDialog


class ReleaseActions:
    def __init__(self, page: QWidget, fleet: FleetService, releases: ReleasesService) -> None:
        self.page, self.fleet, self.releases = page, fleet, releases

    def _choice(self, mod: ModuleRow) -> ModuleChoice:
        package = str(mod.get("package", ""))
        current = str(mod.get("version") or mod.get("newest_version") or "")
        return ModuleChoice(str(mod.get("name")), package, current, self.fleet.versions_of(package))

    def rollout_module(self, mod: ModuleRow) -> RolloutDialog:
        dlg = RolloutDialog(f"Roll out {mod.get('name')}", [self._choice(mod)], parent=self.page)
        module_id = mod["id"]
        dlg.submit = lambda v: self.releases.rollout_module(module_id, v)
        dlg.open()
        return dlg

    def rollout_system(self, system_id: str) -> RolloutDialog | None:
        """Each module's version picked (or kept), as one operation, level by level."""
        system = self.fleet.systems.row_of("system", system_id)
        modules = [self._choice(cast(ModuleRow, m)) for m in system.get("modules", [])]
        if not modules:
            return None
        name = self.fleet.system_names.get(system_id, system_id)
        dlg = RolloutDialog(f"Roll out {name}", modules, system=True, parent=self.page)
        dlg.submit = lambda v: self.releases.rollout_system(system_id, v)
        dlg.open()
        return dlg

    def rollback(self, mod: ModuleRow) -> RollbackDialog:
        current = str(mod.get("version") or mod.get("newest_version") or "")
        dlg = RollbackDialog(str(mod.get("name")), current, self.page)
        module_id = mod["id"]
        dlg.submit = lambda v: self.releases.rollback_module(module_id, v)
        kept = self.releases.kept_versions(module_id)
        kept.add_done_callback(lambda t: _offer(dlg, t.result()) if not t.cancelled() else None)
        dlg.open()
        return dlg

    def module_history(self, mod: ModuleRow) -> ReleaseHistoryDialog:
        dlg = ReleaseHistoryDialog(f"Releases of {mod.get('name')}", self.page)
        self.releases.load_history(dlg.model, mod["id"], "")
        dlg.open()
        return dlg

    def instance_history(self, row: InstanceRow) -> ReleaseHistoryDialog:
        dlg = ReleaseHistoryDialog(f"Releases of {row.get('name')}", self.page)
        self.releases.load_history(dlg.model, str(row.get("module_id") or ""), row["id"])
        dlg.open()
        return dlg

    def settings(self, row: InstanceRow) -> InstanceSettingsDialog:
        module = cast(ModuleRow, self.fleet.systems.row_of("module", str(row.get("module_id"))))
        latest = self.fleet.instances.row(row["id"]) or row  # the settings events brought
        dlg = InstanceSettingsDialog({**row, **latest}, module, self.page)
        instance_id = row["id"]
        dlg.submit = lambda v: self.releases.update_settings(instance_id, v)
        dlg.open()
        return dlg


def _offer(dlg: RollbackDialog, versions: list[str] | None) -> None:
    if versions and isValid(dlg):
        dlg.add_versions(versions)
