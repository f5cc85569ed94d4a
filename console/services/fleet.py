"""Nodes, packages, systems and instances: loaded on connect, kept live by events, acted upon.

Owns the models of those views. Widgets call the `@async_slot` methods (each returns a task;
failures reach the user through the message bridge) and read the models; they never see the
client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from PySide6.QtCore import QObject, QTimer, Signal

from console.client import ClientError
from console.message import action, async_slot, info
from console.models.rows import InstanceRow, LoadRow, NodeRow, PackageRow, SystemRow, as_row
from console.models.systems import SystemTreeModel
from console.models.tables import InstanceTableModel, NodeTableModel, PackageTableModel
from console.services.session import Session
from protocol.rest import InstanceOut
from protocol.states import DOWN_STATES

log = logging.getLogger(__name__)


def _has_check(manifest: dict[str, Any]) -> bool:
    return bool(manifest.get("health"))


NODE_LOAD = ("cpu_percent", "mem_percent", "disk_percent", "load1")
GONE_STATES = frozenset({*DOWN_STATES, "unknown", "deploying", "destroying"})


class FleetService(QObject):
    loaded = Signal()  # a full reload finished
    instances_deployed = Signal(list)  # ids of instances created by `deploy`

    def __init__(self, session: Session, tick_ms: int = 100) -> None:
        super().__init__()
        self.session = session
        self.nodes = NodeTableModel(self, tick_ms)
        self.instances = InstanceTableModel(self, tick_ms)
        self.packages = PackageTableModel(self, tick_ms)
        self.systems = SystemTreeModel(self)
        self.node_names: dict[str, str] = {}
        self.system_names: dict[str, str] = {}
        self.module_names: dict[str, str] = {}
        self.module_packages: dict[str, str] = {}  # module id -> package name
        self.module_systems: dict[str, str] = {}  # module id -> system id
        self.package_checks: dict[tuple[str, str], bool] = {}  # (name, version) -> has a check
        self._stale_systems: set[str] = set()
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(250)
        self._reload_timer.timeout.connect(self._reload_stale_systems)
        # Events that arrive while a reload is fetching are applied at once and again on top of
        # the snapshot, which may predate them (a package uploaded during the fetch).
        self._reloading = 0
        self._replay: list[tuple[Any, dict[str, Any]]] = []
        # Instance events received, per instance: an action's answer is older than any event
        # that arrived while it was on its way (see _apply_answers).
        self._instance_events: dict[str, int] = {}
        for topic, handler in (
            ("node", self.on_node),
            ("instance", self._on_instance_event),
            ("system", self.on_system),
            ("package", self.on_package),
            ("module", self.on_module),
            ("operation", self.on_operation),
        ):
            session.on(topic, self._recording(handler))
        self.instances.attach_live(session.live.samples, session.live.order)
        session.on_metrics(self.on_metrics)
        session.resynced.connect(self.reload)
        session.logged_out.connect(self.clear)

    # -- loading --------------------------------------------------------------------------

    def _recording(self, handler: Any) -> Any:
        def record(data: dict[str, Any]) -> None:
            if self._reloading:
                self._replay.append((handler, data))
            handler(data)

        return record

    @async_slot()
    @action("loading the fleet")
    async def reload(self) -> None:
        client = self.session.require()
        self._reloading += 1
        try:
            nodes, instances, packages, systems = await asyncio.gather(
                client.nodes(), client.instances(), client.packages(), client.systems()
            )
            details = await asyncio.gather(*(client.system(s.id) for s in systems))
        finally:
            self._reloading -= 1
        replay = self._replay if not self._reloading else list(self._replay)
        if not self._reloading:
            self._replay = []
        self.node_names = {n.id: n.hostname for n in nodes}
        self.system_names = {s.id: s.name for s in systems}
        self.module_names = {m.id: m.name for d in details for m in d.modules}
        self.module_packages = {m.id: m.package for d in details for m in d.modules}
        self.module_systems = {m.id: d.id for d in details for m in d.modules}
        self.package_checks = {(p.name, p.version): _has_check(p.manifest) for p in packages}
        self.nodes.set_rows(as_row(n, NodeRow) for n in nodes)
        self.packages.set_rows(as_row(p, PackageRow) for p in packages)
        # Live figures already shown survive a reload: the model keeps them apart from rows.
        self.instances.set_rows(self.enrich(as_row(i, InstanceRow)) for i in instances)
        self.instances.clear_live(i.id for i in instances if i.state in GONE_STATES)
        self.systems.set_systems([self._enrich_detail(as_row(d, SystemRow)) for d in details])
        for handler, data in replay:
            handler(data)
        self.loaded.emit()

    def clear(self) -> None:
        for model in (self.nodes, self.instances, self.packages):
            model.set_rows([])
        self.systems.set_systems([])

    def enrich(self, row: InstanceRow) -> InstanceRow:
        """The instance with the names of its system, node and module, and whether its package
        has a health check (when known)."""
        system_id, node_id = row.get("system_id", ""), row.get("node_id", "")
        row["system_name"] = self.system_names.get(system_id, system_id)
        row["node_name"] = self.node_names.get(node_id, node_id)
        row["module_name"] = self.module_names.get(row.get("module_id") or "", "")
        package = self.module_packages.get(row.get("module_id") or "")
        check = self.package_checks.get((package, str(row.get("version")))) if package else None
        if check is not None:
            row["health_check"] = check
        return row

    def _enrich_detail(self, detail: SystemRow) -> SystemRow:
        detail["instances"] = [self.enrich(i) for i in detail.get("instances", [])]
        for mod in detail.get("modules", []):
            newest = self.versions_of(str(mod.get("package", "")))
            if newest:
                mod["newest_version"] = newest[0]
        return detail

    def versions_of(self, package: str) -> list[str]:
        """The versions of a package the master has, newest upload first."""
        rows = [r for r in self.packages.rows() if r.get("name") == package]
        rows.sort(key=lambda r: str(r.get("uploaded_at") or ""), reverse=True)
        return [str(r.get("version")) for r in rows]

    # -- events ---------------------------------------------------------------------------

    def on_node(self, data: dict[str, Any]) -> None:
        node_id = str(data["id"])
        self.nodes.update(cast(NodeRow, data))
        name = data.get("hostname")
        if name and self.node_names.get(node_id) != name:
            self.node_names[node_id] = str(name)
            for key in self.instances.key_list():
                row = self.instances.row(key)
                if row is not None and row.get("node_id") == node_id:
                    self.instances.update({"id": key, "node_name": name})

    def _on_instance_event(self, data: dict[str, Any]) -> None:
        key = str(data.get("id"))
        self._instance_events[key] = self._instance_events.get(key, 0) + 1
        self.on_instance(data)

    def _events_seen(self) -> dict[str, int]:
        return dict(self._instance_events)

    def _apply_answers(self, seen: dict[str, int], answers: list[InstanceOut]) -> None:
        """Show what the master answered to an action, unless the event stream brought news of
        that instance meanwhile: the stream's view is then as new or newer (a start answered
        "starting" after the stream said "running" would otherwise stay "starting"), and the
        master publishes the answer's view on the stream too."""
        for inst in answers:
            if self._instance_events.get(inst.id, 0) == seen.get(inst.id, 0):
                self.on_instance(inst.model_dump())

    def on_instance(self, data: dict[str, Any]) -> None:
        row = self.enrich(cast(InstanceRow, dict(data)))
        self.instances.update(row)
        if data.get("state") in GONE_STATES:  # no process: its last figures are not live
            self.instances.clear_live([str(data["id"])])
        if not self.systems.update_instance(row) and not data.get("deleted"):
            self._mark_stale(str(data.get("system_id", "")))

    def on_system(self, data: dict[str, Any]) -> None:
        system_id = str(data["id"])
        if data.get("deleted"):
            self.system_names.pop(system_id, None)
            self.systems.remove_system(system_id)
            return
        if data.get("name"):
            self.system_names[system_id] = str(data["name"])
        self._mark_stale(system_id)

    def on_package(self, data: dict[str, Any]) -> None:
        if data.get("name") and data.get("version"):
            self.package_checks[(str(data["name"]), str(data["version"]))] = _has_check(
                data.get("manifest") or {}
            )
        self.packages.update(cast(PackageRow, data))
        # Modules on "newest" now mean another version: their systems show it.
        name = data.get("name")
        for module_id, package in self.module_packages.items():
            if name and package == name:
                self._mark_stale(self.module_systems.get(module_id, ""))

    def on_module(self, data: dict[str, Any]) -> None:
        """A module was added, changed or deleted: its system's subtree is loaded again."""
        module_id = str(data["id"])
        if data.get("deleted"):
            self.module_names.pop(module_id, None)
        elif data.get("name"):
            self.module_names[module_id] = str(data["name"])
            self.module_packages[module_id] = str(data.get("package", ""))
            self.module_systems[module_id] = str(data.get("system_id", ""))
        self._mark_stale(str(data.get("system_id", "")))

    def on_operation(self, data: dict[str, Any]) -> None:
        """A rollout or rollback that ended may have changed its modules' versions (the master
        sends no module event for that): their system is loaded again."""
        if data.get("kind") in ("rollout", "rollback") and data.get("state") not in (
            None,
            "running",
        ):
            self._mark_stale(str(data.get("system_id", "")))

    def on_metrics(self, samples: dict[str, dict[str, Any]], changed: set[str] | None) -> None:
        """New `metrics:<id>` samples: the instance table's live columns read `samples`
        themselves (nothing per sample here); nodes' (few) go into their load."""
        self.instances.live_changed(changed)
        for node_id in self.nodes.key_list() if changed is None else changed:
            if self.nodes.row_of(node_id) >= 0:
                sample = samples.get(node_id)
                if sample is not None and sample.get("kind") == "node":
                    self._node_load(node_id, sample)

    def _node_load(self, node_id: str, sample: dict[str, Any]) -> None:
        row = self.nodes.row(node_id)
        if row is not None:
            figures = {f: sample[f] for f in NODE_LOAD if f in sample}
            load = cast(LoadRow, {**(row.get("load") or {}), **figures})
            self.nodes.update({"id": node_id, "load": load})

    def _mark_stale(self, system_id: str) -> None:
        if system_id:
            self._stale_systems.add(system_id)
            self._reload_timer.start()

    def _reload_stale_systems(self) -> None:
        ids, self._stale_systems = self._stale_systems, set()
        if not self.session.connected:
            return
        for system_id in ids:
            self.reload_system(system_id)

    @async_slot(str)
    @action("loading a system")
    async def reload_system(self, system_id: str) -> None:
        client = self.session.require()
        try:
            detail = await client.system(system_id)
        except ClientError as exc:
            if exc.status == 404:
                self.systems.remove_system(system_id)
                return
            raise
        self.system_names[detail.id] = detail.name
        self.module_names.update({m.id: m.name for m in detail.modules})
        self.module_packages.update({m.id: m.package for m in detail.modules})
        self.module_systems.update({m.id: detail.id for m in detail.modules})
        self.systems.upsert_system(self._enrich_detail(as_row(detail, SystemRow)))

    # -- instances ------------------------------------------------------------------------

    async def _each(self, ids: list[str], call: Callable[[str], Awaitable[InstanceOut]]) -> None:
        seen = self._events_seen()
        results = await asyncio.gather(*(call(i) for i in ids), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        self._apply_answers(seen, [r for r in results if isinstance(r, InstanceOut)])
        if errors:
            raise errors[0]

    @async_slot(list)
    @action("starting")
    async def start_instances(self, ids: list[str]) -> None:
        await self._each(ids, self.session.require().start_instance)

    @async_slot(list)
    @action("stopping")
    async def stop_instances(self, ids: list[str]) -> None:
        await self._each(ids, self.session.require().stop_instance)

    @async_slot(list)
    @action("restarting")
    async def restart_instances(self, ids: list[str]) -> None:
        await self._each(ids, self.session.require().restart_instance)

    @async_slot(list)
    @action("destroying")
    async def destroy_instances(self, ids: list[str]) -> None:
        client = self.session.require()
        await asyncio.gather(*(client.destroy_instance(i) for i in ids))
        info(f"destroying {len(ids)} instance(s)")

    @async_slot(str, list)
    @action("deploying")
    async def deploy(self, module_id: str, node_ids: list[str]) -> list[str]:
        client = self.session.require()
        seen = self._events_seen()
        made = await asyncio.gather(*(client.deploy(module_id, n) for n in node_ids))
        self._apply_answers(seen, made)
        ids = [i.id for i in made]
        self.instances_deployed.emit(ids)
        return ids

    @async_slot(dict)
    @action("adopting a process")
    async def adopt(self, body: dict[str, Any]) -> str | None:
        seen = self._events_seen()
        try:
            inst = await self.session.require().adopt(body)
        except ClientError as exc:
            candidates = exc.details.get("candidates") if exc.code == "ambiguous_match" else None
            if candidates:  # say which processes matched, so the pattern can be narrowed
                listed = "; ".join(
                    f"pid {c.get('pid')} {c.get('cmdline') or c.get('name')}"[:120]
                    for c in candidates[:5]
                )
                raise ClientError(f"{exc.message}: {listed}", code=exc.code) from None
            raise
        self._apply_answers(seen, [inst])
        info(f"adopted {inst.name}")
        return inst.id

    # -- systems and modules --------------------------------------------------------------

    @async_slot(str, str)
    @action("creating the system")
    async def create_system(self, name: str, description: str = "") -> str:
        out = await self.session.require().create_system(name, description)
        self.system_names[out.id] = out.name
        await self.reload_system(out.id)
        return out.id

    @async_slot(str, str)
    @action("saving the system")
    async def update_system(self, system_id: str, description: str) -> None:
        await self.session.require().update_system(system_id, description)
        await self.reload_system(system_id)

    @async_slot(str)
    @action("deleting the system")
    async def delete_system(self, system_id: str) -> None:
        await self.session.require().delete_system(system_id)
        self.systems.remove_system(system_id)

    @async_slot(str, dict)
    @action("adding the module")
    async def create_module(self, system_id: str, fields: dict[str, Any]) -> str:
        mod = await self.session.require().create_module(system_id, **fields)
        self.module_names[mod.id] = mod.name
        await self.reload_system(system_id)
        return mod.id

    @async_slot(str, str, dict)
    @action("saving the module")
    async def update_module(self, system_id: str, module_id: str, changes: dict[str, Any]) -> None:
        await self.session.require().update_module(module_id, **changes)
        await self.reload_system(system_id)

    @async_slot(str, str)
    @action("deleting the module")
    async def delete_module(self, system_id: str, module_id: str) -> None:
        await self.session.require().delete_module(module_id)
        await self.reload_system(system_id)

    # -- nodes and packages ---------------------------------------------------------------

    @async_slot(str, dict)
    @action("saving the node's labels")
    async def set_node_labels(self, node_id: str, labels: dict[str, str]) -> None:
        node = await self.session.require().set_node_labels(node_id, labels)
        self.nodes.update(as_row(node, NodeRow))

    @async_slot(str)
    @action("removing the node")
    async def delete_node(self, node_id: str) -> None:
        await self.session.require().delete_node(node_id)
        self.nodes.remove(node_id)

    @async_slot(str)
    @action("deleting the package")
    async def delete_package(self, package_id: str) -> None:
        await self.session.require().delete_package(package_id)
        self.packages.remove(package_id)
