"""Nodes, packages, systems and instances: loaded on connect, kept live by events, acted upon.

Owns the models of those views. Widgets call the `@async_slot` methods (each returns a task;
failures reach the user through the message bridge) and read the models; they never see the
client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from console.client import ClientError
from console.message import action, async_slot, info
from console.models.base import Row
from console.models.systems import SystemTreeModel
from console.models.tables import (
    InstanceTableModel,
    NodeTableModel,
    OperationStepModel,
    PackageTableModel,
)
from console.services.metrics import samples_in
from console.services.session import Session
from protocol.states import DOWN_STATES, InstanceState

log = logging.getLogger(__name__)
METRIC_COLUMNS = ("cpu_percent", "rss_bytes", "read_bps", "write_bps")
OPERATION_STEP_TIMEOUT = 120.0


class FleetService(QObject):
    loaded = Signal()  # a full reload finished
    operation_changed = Signal(str, str, int, int)  # system id, state, steps done, steps total
    instances_deployed = Signal(list)  # ids of instances created by `deploy`

    def __init__(self, session: Session, tick_ms: int = 100) -> None:
        super().__init__()
        self.session = session
        self.nodes = NodeTableModel(self, tick_ms)
        self.instances = InstanceTableModel(self, tick_ms)
        self.packages = PackageTableModel(self, tick_ms)
        self.systems = SystemTreeModel(self)
        self.operation_steps = OperationStepModel(self, tick_ms)
        self.node_names: dict[str, str] = {}
        self.system_names: dict[str, str] = {}
        self.module_names: dict[str, str] = {}
        self.operation_state = ""
        self._stale_systems: set[str] = set()
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(250)
        self._reload_timer.timeout.connect(self._reload_stale_systems)
        # Events that arrive while a reload is fetching are applied at once and again on top of
        # the snapshot, which may predate them (a package uploaded during the fetch).
        self._reloading = 0
        self._replay: list[tuple[Any, dict[str, Any]]] = []
        for topic, handler in (
            ("node", self.on_node),
            ("instance", self.on_instance),
            ("system", self.on_system),
            ("package", self.on_package),
        ):
            session.on(topic, self._recording(handler))
        session.on("metrics", self.on_metrics)
        session.on("operation", self.on_operation)
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
        self.nodes.set_rows(n.model_dump() for n in nodes)
        self.packages.set_rows(p.model_dump() for p in packages)
        # Metrics already shown survive a reload; they are not part of the instance body.
        old = {
            k: {c: r.get(c) for c in METRIC_COLUMNS}
            for k in self.instances.key_list()
            if (r := self.instances.row(k))
        }
        rows = []
        for inst in instances:
            row = self.enrich(inst.model_dump())
            row.update({k: v for k, v in old.get(inst.id, {}).items() if v is not None})
            rows.append(row)
        self.instances.set_rows(rows)
        self.systems.set_systems([self._enrich_detail(d.model_dump()) for d in details])
        for handler, data in replay:
            handler(data)
        self.loaded.emit()

    def clear(self) -> None:
        for model in (self.nodes, self.instances, self.packages, self.operation_steps):
            model.set_rows([])
        self.systems.set_systems([])

    def enrich(self, row: Row) -> Row:
        row["system_name"] = self.system_names.get(row.get("system_id", ""), row.get("system_id"))
        row["node_name"] = self.node_names.get(row.get("node_id", ""), row.get("node_id"))
        row["module_name"] = self.module_names.get(row.get("module_id") or "", "")
        return row

    def _enrich_detail(self, detail: Row) -> Row:
        detail["instances"] = [self.enrich(i) for i in detail.get("instances", [])]
        return detail

    # -- events ---------------------------------------------------------------------------

    def on_node(self, data: dict[str, Any]) -> None:
        node_id = str(data["id"])
        self.nodes.update(data)
        name = data.get("hostname")
        if name and self.node_names.get(node_id) != name:
            self.node_names[node_id] = str(name)
            for key in self.instances.key_list():
                row = self.instances.row(key)
                if row is not None and row.get("node_id") == node_id:
                    self.instances.update({"id": key, "node_name": name})

    def on_instance(self, data: dict[str, Any]) -> None:
        row = self.enrich(dict(data))
        self.instances.update(row)
        if not self.systems.update_instance(row) and not data.get("deleted"):
            self._mark_stale(str(data.get("system_id", "")))
        if self.operation_steps.row(str(data.get("id"))) is not None and "state" in data:
            self.operation_steps.update({"instance_id": data["id"], "state": data["state"]})

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
        self.packages.update(data)

    def on_metrics(self, data: dict[str, Any]) -> None:
        merge = self.instances.merge
        batch = data.get("samples")
        if type(batch) is list:
            # The hot path: a node's batch of samples each second, thousands per tick in all.
            cols = METRIC_COLUMNS
            self.instances.merge_many(
                {
                    iid: {f: s[f] for f in cols if f in s}
                    for s in batch
                    if type(s) is dict and (iid := s.get("instance_id")) is not None
                },
                cols,
            )
            return
        for target, kind, _ts, values in samples_in(data):
            if kind == "instance":
                merge(target, values)

    def on_operation(self, data: dict[str, Any]) -> None:
        for step in data.get("steps", []) or []:
            if isinstance(step, dict) and step.get("instance_id"):
                self.operation_steps.update(step)
        if data.get("state"):
            self.operation_state = str(data["state"])

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
        self.systems.upsert_system(self._enrich_detail(detail.model_dump()))

    # -- instances ------------------------------------------------------------------------

    async def _each(self, ids: list[str], call: Any) -> None:
        results = await asyncio.gather(*(call(i) for i in ids), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if not isinstance(r, BaseException) and hasattr(r, "model_dump"):
                self.on_instance(r.model_dump())
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
        made = await asyncio.gather(*(client.deploy(module_id, n) for n in node_ids))
        for inst in made:
            self.on_instance(inst.model_dump())
        ids = [i.id for i in made]
        self.instances_deployed.emit(ids)
        return ids

    @async_slot(dict)
    @action("adopting a process")
    async def adopt(self, body: dict[str, Any]) -> str | None:
        inst = await self.session.require().adopt(body)
        self.on_instance(inst.model_dump())
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

    @async_slot(str)
    @action("starting the system")
    async def start_system(self, system_id: str) -> str:
        return await self._run_system(system_id, start=True)

    @async_slot(str)
    @action("stopping the system")
    async def stop_system(self, system_id: str) -> str:
        return await self._run_system(system_id, start=False)

    async def _run_system(self, system_id: str, start: bool) -> str:
        """The master's batch operation, followed step by step; ordered by the console when the
        master has no batch endpoint yet (same order: ascending start_order, reverse to stop)."""
        client = self.session.require()
        detail = await client.system(system_id)
        order = {m.id: m.start_order for m in detail.modules}
        names = {i.id: i.name for i in detail.instances}
        levels = {i.id: order.get(i.module_id or "", 0) for i in detail.instances}
        self.operation_steps.set_rows(
            {
                "instance_id": i.id,
                "name": names[i.id],
                "level": levels[i.id],
                "state": "pending",
                "error": "",
            }
            for i in detail.instances
        )
        total = len(detail.instances)
        self.operation_state = "running"
        self.operation_changed.emit(system_id, "running", 0, total)
        try:
            op_id = await (client.start_system if start else client.stop_system)(system_id)
        except ClientError as exc:
            if not exc.endpoint_missing:
                raise
            state = await self._ordered(system_id, levels, start)
        else:
            state = await self._follow(system_id, op_id, total)
        self.operation_state = state
        self.operation_changed.emit(system_id, state, self._done_steps(start), total)
        if state == "failed":
            failed = [r for r in self.operation_steps.rows() if r.get("error")]
            why = f"{failed[0]['name']}: {failed[0]['error']}" if failed else "a step failed"
            raise ClientError(why, code="operation_failed")
        info(f"system {detail.name} {'started' if start else 'stopped'}")
        return state

    def _done_steps(self, start: bool) -> int:
        self.operation_steps.flush()
        # Steps of the master's operation end "done"; the console's own ordering (a master
        # without batch operations) records the instance states it reached.
        want = (
            {"done", "running", "succeeded", "healthy"}
            if start
            else {"done", *DOWN_STATES, "succeeded"}
        )
        return sum(1 for r in self.operation_steps.rows() if r.get("state") in want)

    async def _follow(self, system_id: str, op_id: str, total: int) -> str:
        client = self.session.require()
        while True:
            op = await client.operation(op_id)
            self.on_operation(op.model_dump())
            self.operation_steps.flush()
            done = sum(1 for s in op.steps if s.state in ("done", "skipped"))
            self.operation_changed.emit(system_id, op.state, done, total)
            if op.state != "running":
                return op.state
            await asyncio.sleep(0.3)

    async def _ordered(self, system_id: str, levels: dict[str, int], start: bool) -> str:
        client = self.session.require()
        target = InstanceState.RUNNING if start else InstanceState.STOPPED
        done = 0
        for level in sorted(set(levels.values()), reverse=not start):
            ids = [i for i, lv in levels.items() if lv == level]
            for i in ids:
                self.operation_steps.update(
                    {"instance_id": i, "state": "starting" if start else "stopping"}
                )
            call = client.start_instance if start else client.stop_instance
            results = await asyncio.gather(*(call(i) for i in ids), return_exceptions=True)
            for i, r in zip(ids, results, strict=True):
                if isinstance(r, BaseException):
                    self.operation_steps.update(
                        {"instance_id": i, "state": "failed", "error": str(r)}
                    )
                    return "failed"
            for i in ids:
                state = await self._wait_state(i, target, start)
                self.operation_steps.update({"instance_id": i, "state": state})
                if state != target:
                    row = self.instances.row(i) or {}
                    why = row.get("last_error") or f"ended {state}"
                    self.operation_steps.update({"instance_id": i, "error": why})
                    return "failed"
                done += 1
                self.operation_changed.emit(system_id, "running", done, len(levels))
        return "succeeded"

    async def _wait_state(self, instance_id: str, target: str, start: bool) -> str:
        client = self.session.require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OPERATION_STEP_TIMEOUT
        state = ""
        while loop.time() < deadline:
            state = (await client.instance(instance_id)).state
            if state == target or (start and state in ("failed", "exited")):
                return state
            await asyncio.sleep(0.25)
        return state or "timeout"

    # -- nodes and packages ---------------------------------------------------------------

    @async_slot(str, dict)
    @action("saving the node's labels")
    async def set_node_labels(self, node_id: str, labels: dict[str, str]) -> None:
        node = await self.session.require().set_node_labels(node_id, labels)
        self.nodes.update(node.model_dump())

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
