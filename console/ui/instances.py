"""Instances: sortable, filterable, live; start, stop, restart, destroy, adopt; an instance's
own settings and release history; charts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QSplitter, QVBoxLayout, QWidget

from console.models.rows import InstanceRow
from console.services.fleet import FleetService
from console.services.metrics import MetricsService
from console.services.releases import ReleasesService
from console.ui import common
from console.ui.charts import ChartPanel
from console.ui.dialogs.adopt import AdoptDialog
from console.ui.dialogs.instance_settings import InstanceSettingsDialog
from console.ui.dialogs.release_history import ReleaseHistoryDialog
from console.ui.release_actions import ReleaseActions
from console.ui.table_panel import TablePanel
from protocol.states import ACTIVE_STATES, BUSY_STATES, STARTABLE_STATES, InstanceState


def _any_in(states: frozenset[InstanceState]) -> Callable[[list[InstanceRow]], bool]:
    words = {s.value for s in states}
    return lambda rows: any(r.get("state") in words for r in rows)


def _restartable(rows: list[InstanceRow]) -> bool:
    return any(r.get("state") not in {s.value for s in BUSY_STATES} for r in rows)


def _deployed_one(rows: list[InstanceRow]) -> bool:
    """One instance with a module (adopted ones have no settings or releases)."""
    return len(rows) == 1 and bool(rows[0].get("module_id")) and not rows[0].get("adopted")


class InstancesPage(QWidget):
    open_logs = Signal(str)  # instance id

    def __init__(
        self,
        fleet: FleetService,
        metrics: MetricsService,
        releases: ReleasesService,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__()
        self.fleet, self.metrics = fleet, metrics
        self.release_actions = ReleaseActions(self, fleet, releases)
        lay = QVBoxLayout(self)
        lay.addWidget(common.page_title("Instances"))
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = TablePanel(fleet.instances, "instances", settings)
        t = self.table
        # Start only what has no process, stop only what has one.
        self.start_action = t.add_action(
            "Start", self.start, "Ctrl+R", enabled_when=_any_in(STARTABLE_STATES)
        )
        self.stop_action = t.add_action(
            "Stop", self.stop, "Ctrl+T", enabled_when=_any_in(ACTIVE_STATES)
        )
        self.restart_action = t.add_action(
            "Restart", self.restart, "Ctrl+Shift+R", enabled_when=_restartable
        )
        self.destroy_action = t.add_action("Destroy…", self.destroy_selected, "Del")
        t.toolbar.addSeparator()
        self.adopt_action = t.add_action(
            "Adopt…", self.adopt, "Ctrl+Shift+A", needs_selection=False
        )
        self.logs_action = t.add_action("Logs", self._logs, "Ctrl+Shift+L")
        self.settings_action = t.add_action(
            "Settings…", self.edit_settings, "F2", enabled_when=_deployed_one
        )
        self.history_action = t.add_action(
            "History…", self.history, "Ctrl+H", enabled_when=_deployed_one
        )
        self.state_filter = QComboBox()
        self.state_filter.addItem("all states", "")
        for s in InstanceState:
            self.state_filter.addItem(s.value, s.value)
        self.state_filter.currentIndexChanged.connect(self._state_filter)
        t.toolbar.addSeparator()
        t.toolbar.addWidget(self.state_filter)
        split.addWidget(t)
        self.charts = ChartPanel(metrics.store)
        split.addWidget(self.charts)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay.addWidget(split, 1)
        self.current = ""
        t.selection_changed.connect(self._selected)
        metrics.unavailable.connect(self.charts.say)
        # Live figures are followed for the rows in view (the master caps subscriptions):
        # asked again, a moment after scrolling, sorting, filtering or the rows changing.
        self._rows_timer = QTimer(self)
        self._rows_timer.setSingleShot(True)
        self._rows_timer.setInterval(200)
        self._rows_timer.timeout.connect(self.follow_visible_rows)
        proxy = t.proxy
        for sig in (proxy.modelReset, proxy.layoutChanged, proxy.rowsInserted, proxy.rowsRemoved):
            sig.connect(lambda *_: self._rows_timer.start())
        t.model.reordered.connect(self._rows_timer.start)  # a re-sort may come without a layout
        t.view.verticalScrollBar().valueChanged.connect(lambda _: self._rows_timer.start())

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._rows_timer.start()

    def visible_keys(self, margin: int = 10) -> list[str]:
        """Instance ids whose rows are in view (with a margin), or all when they all fit."""
        model, proxy, view = self.fleet.instances, self.table.proxy, self.table.view
        room = self.metrics.budget - len(self.metrics.charted)
        if len(model) <= room:
            return model.key_list()
        first = max(0, view.rowAt(0))
        last = view.rowAt(view.viewport().height() - 1)
        if last < 0:
            last = proxy.rowCount() - 1
        rows = range(max(0, first - margin), min(proxy.rowCount(), last + margin + 1))
        return [proxy.key_at(r) for r in rows][:room]

    def follow_visible_rows(self) -> None:
        self.metrics.want_rows(self.visible_keys())

    def _state_filter(self) -> None:
        state = str(self.state_filter.currentData() or "")
        self.table.filter.setEnabled(not state)
        col = self.fleet.instances.column("state")
        self.table.proxy.set_text(state or self.table.filter.text(), col if state else -1)

    def _selected(self) -> None:
        keys = self.table.selected_keys()
        if not keys or keys[0] == self.current:
            return
        if self.current:
            self.metrics.unwatch(self.current)
        self.current = keys[0]
        row = self.fleet.instances.row(self.current)
        name = row.get("name", self.current) if row else self.current
        self.charts.show_target("instance", self.current, str(name))
        self.metrics.watch("instance", self.current, 3600)

    def _each(self, call: Callable[[list[str]], Any]) -> Any:
        keys = self.table.selected_keys()
        return call(keys) if keys else None

    def start(self) -> Any:
        return self._each(self.fleet.start_instances)

    def stop(self) -> Any:
        return self._each(self.fleet.stop_instances)

    def restart(self) -> Any:
        return self._each(self.fleet.restart_instances)

    def destroy_selected(self) -> Any:
        rows = self.table.selected_rows()
        if not rows:
            return None
        names = ", ".join(str(r.get("name")) for r in rows[:5]) + (" …" if len(rows) > 5 else "")
        ids = [str(r["id"]) for r in rows]
        return common.confirm(
            self,
            "Destroy",
            f"Destroy {len(rows)} instance(s) ({names})? Deployed ones are stopped and their "
            "files removed from the node; adopted ones are only forgotten.",
            lambda: self.fleet.destroy_instances(ids),
        )

    def adopt(self) -> AdoptDialog:
        dlg = AdoptDialog(self.fleet.system_names, self.fleet.nodes.rows(), self)
        dlg.submit = self.fleet.adopt
        dlg.open()
        return dlg

    def edit_settings(self) -> InstanceSettingsDialog | None:
        rows = self.table.selected_rows()
        return self.release_actions.settings(rows[0]) if _deployed_one(rows) else None

    def history(self) -> ReleaseHistoryDialog | None:
        rows = self.table.selected_rows()
        return self.release_actions.instance_history(rows[0]) if _deployed_one(rows) else None

    def _logs(self) -> None:
        keys = self.table.selected_keys()
        if keys:
            self.open_logs.emit(keys[0])
