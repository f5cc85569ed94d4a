"""Instance lifecycle: the master's desired state, the commands it sends, and what agents report.

API calls change the desired state, answer at once (202) and send the command in the
background; the agent's `instance_state` reports are the truth about processes. After any
reconnect, `on_hello` compares the two and re-drives what was interrupted, so nothing is
started twice and nothing is forgotten.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services import accounts, instance_rows
from master.services.agents import AgentLink, AgentRegistry
from master.services.serializers import instance_out
from master.storage.base import PackageStore
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import (
    Batch,
    Deploy,
    Destroy,
    Hello,
    InstanceReport,
    InstanceSpec,
    PackageRef,
    Result,
    Start,
    Stop,
)
from protocol.rest import InstanceOut
from protocol.states import (
    ACTIVE_STATES,
    BUSY_STATES,
    DesiredState,
    InstanceState,
)

log = logging.getLogger(__name__)

NODES = cast(Table, models.Node.__table__)

DEPLOY_TIMEOUT = 3600.0
PRESIGNED_TTL = 3600.0  # an agent starts its download within seconds; an hour is ample
COMMAND_SLACK = 30.0


class Orchestrator:
    def __init__(self, db: Database, agents: AgentRegistry, hub: Hub, settings: Settings) -> None:
        self.db = db
        self.agents = agents
        self.hub = hub
        self.settings = settings
        self._tasks: set[asyncio.Task[Any]] = set()
        self.store: PackageStore | None = None  # set at startup
        # Called with every instance change (after commit); batch operations follow steps here.
        self.listeners: list[Callable[[InstanceOut], None]] = []
        # Nodes whose `hello` has been applied since they (or this master) last went away.
        self.reconciled: set[str] = set()
        self._queued: list[tuple[str, list[InstanceReport]]] = []  # see queue_reports

    # -- plumbing ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self.flush_reports()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def publish(self, inst: models.Instance) -> None:
        self.publish_view(instance_out(inst))

    def publish_view(self, out: InstanceOut) -> None:
        self.hub.publish("instance", out.model_dump())
        for listener in self.listeners:
            listener(out)

    def _update(self, instance_id: str, **fields: Any) -> models.Instance | None:
        with self.db.session() as s:
            inst = s.get(models.Instance, instance_id)
            if inst is None:
                return None
            for key, value in fields.items():
                setattr(inst, key, value)
            s.commit()
            self.publish(inst)
            return inst

    def package_ref(self, pkg: models.Package) -> PackageRef:
        return PackageRef(
            id=pkg.id,
            name=pkg.name,
            version=pkg.version,
            sha256=pkg.sha256,
            size=pkg.size,
            url=f"/api/v1/packages/{pkg.id}/download",
        )

    def spec_for(self, s: Session, inst: models.Instance) -> InstanceSpec:
        pkg = s.get(models.Package, inst.package_id) if inst.package_id else None
        if pkg is None:
            raise GdosError(ErrorCode.NOT_FOUND, f"the package of instance {inst.name} is gone")
        mod = s.get(models.Module, inst.module_id) if inst.module_id else None
        env = dict(pkg.manifest.get("env") or {})
        args = None
        if mod is not None:
            env.update(mod.env or {})
            args = mod.args
        return InstanceSpec(
            instance_id=inst.id, name=inst.name, package=self.package_ref(pkg), env=env, args=args
        )

    # -- API-facing -------------------------------------------------------------------------

    def resolve_package(self, s: Session, name: str, version: str | None) -> models.Package:
        q = select(models.Package).where(models.Package.name == name)
        if version is not None:
            q = q.where(models.Package.version == version)
        pkg = s.scalars(q.order_by(models.Package.uploaded_at.desc()).limit(1)).first()
        if pkg is None:
            what = f"{name} {version}" if version else name
            raise GdosError(
                ErrorCode.NOT_FOUND, f"no package {what} has been uploaded", {"package": name}
            )
        return pkg

    async def deploy(self, s: Session, mod: models.Module, node: models.Node) -> models.Instance:
        pkg = self.resolve_package(s, mod.package_name, mod.version)
        manifest = Manifest.from_data(pkg.manifest)
        if manifest.os and node.os and manifest.os != node.os:
            raise GdosError(
                ErrorCode.OS_MISMATCH,
                f"package {pkg.name} {pkg.version} is for {manifest.os}; node "
                f"{node.hostname} runs {node.os}",
            )
        link = self.agents.require(node.id)
        inst = self._insert_instance(s, mod, node, pkg)
        spec = self.spec_for(s, inst)
        self.publish(inst)
        self.spawn(self._send_deploy(link, spec))
        return inst

    def _insert_instance(
        self, s: Session, mod: models.Module, node: models.Node, pkg: models.Package
    ) -> models.Instance:
        taken = set(
            s.scalars(
                select(models.Instance.name).where(models.Instance.system_id == mod.system_id)
            )
        )
        n = 1
        while f"{mod.name}-{n}" in taken:
            n += 1
        inst = models.Instance(
            system_id=mod.system_id,
            module_id=mod.id,
            node_id=node.id,
            name=f"{mod.name}-{n}",
            package_id=pkg.id,
            version=pkg.version,
            state=InstanceState.DEPLOYING,
            desired_state=DesiredState.STOPPED,
        )
        s.add(inst)
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            raise GdosError(ErrorCode.CONFLICT, "another deploy took that name; retry") from None
        return inst

    async def presigned_ref(self, ref: PackageRef) -> PackageRef:
        """With an object store, agents fetch straight from the bucket (the master stays out of
        the data path); the agent still checks sha256 before unpacking."""
        url = await self.store.presigned_url(ref.sha256, PRESIGNED_TTL) if self.store else None
        if url is None:
            return ref
        return ref.replace(url=url, needs_auth=False)

    async def _send_deploy(self, link: AgentLink, spec: InstanceSpec) -> None:
        assert spec.package is not None, "only packaged instances are deployed"
        try:
            package = await self.presigned_ref(spec.package)
        except GdosError as exc:
            self._note_failure(spec.instance_id, exc.message)
            return
        spec = spec.replace(package=package)
        msg = Deploy(id=link.next_id(), spec=spec)
        await self._command(link, msg, spec.instance_id, DEPLOY_TIMEOUT)

    async def _command(
        self,
        link: AgentLink,
        msg: Deploy | Start | Stop | Destroy | Batch,
        instance_id: str,
        timeout: float,
    ) -> Result | None:
        """Send one command; a failure the agent did not report itself lands on the instance."""
        try:
            result = await link.request(msg, timeout)
        except GdosError as exc:
            log.warning("%s %s on %s: %s", msg.type, instance_id, link.node_id, exc.message)
            self._note_failure(instance_id, exc.message)
            return None
        if not result.ok:
            err = result.error.message if result.error else f"{msg.type} failed"
            self._note_failure(instance_id, err, result.data.get("state"))
        return result

    def _note_failure(self, instance_id: str, message: str, state: str | None = None) -> None:
        with self.db.session() as s:
            inst = s.get(models.Instance, instance_id)
            if inst is None:
                return
            inst.last_error = message
            if state:
                inst.state = state
            elif inst.state in (InstanceState.DEPLOYING, InstanceState.STARTING):
                inst.state = InstanceState.FAILED
            elif inst.state == InstanceState.STOPPING:
                inst.state = InstanceState.UNKNOWN
            s.commit()
            self.publish(inst)

    def _stop_timeout(self, s: Session, inst: models.Instance) -> float:
        pkg = s.get(models.Package, inst.package_id) if inst.package_id else None
        source = pkg.manifest if pkg else (inst.adoption or {})
        return float(source.get("stop_timeout", 10)) + COMMAND_SLACK

    def check_startable(self, inst: models.Instance) -> None:
        """An adopted process without a start command can be watched and stopped, not started."""
        if inst.adopted and not (inst.adoption or {}).get("start_command"):
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"{inst.name} was adopted without a start command: GDOS cannot start it",
                {"instance_id": inst.id},
            )

    def _check_controllable(self, inst: models.Instance) -> AgentLink:
        if inst.state in BUSY_STATES:
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"instance {inst.name} is {inst.state}; wait until that finishes",
                {"state": inst.state},
            )
        return self.agents.require(inst.node_id)

    async def start(self, s: Session, inst: models.Instance) -> models.Instance:
        link = self._check_controllable(inst)
        if inst.state not in ACTIVE_STATES:
            self.check_startable(inst)
        inst.desired_state = DesiredState.RUNNING
        if inst.state in ACTIVE_STATES - {InstanceState.STOPPING}:
            s.commit()
            return inst  # already starting or running: never a second process
        inst.state = InstanceState.STARTING
        inst.last_error = None
        s.commit()
        self.publish(inst)
        self.spawn(
            self._command(
                link, Start(id=link.next_id(), instance_id=inst.id), inst.id, COMMAND_SLACK * 4
            )
        )
        return inst

    async def stop(self, s: Session, inst: models.Instance) -> models.Instance:
        link = self._check_controllable(inst)
        inst.desired_state = DesiredState.STOPPED
        if inst.state == InstanceState.STOPPED:
            s.commit()
            return inst
        # Sent for exited and failed instances too: the agent then cancels a pending restart.
        inst.state = InstanceState.STOPPING
        s.commit()
        self.publish(inst)
        timeout = self._stop_timeout(s, inst)
        self.spawn(
            self._command(link, Stop(id=link.next_id(), instance_id=inst.id), inst.id, timeout)
        )
        return inst

    async def restart(self, s: Session, inst: models.Instance) -> models.Instance:
        link = self._check_controllable(inst)
        self.check_startable(inst)
        inst.desired_state = DesiredState.RUNNING
        inst.state = (
            InstanceState.STOPPING if inst.state in ACTIVE_STATES else InstanceState.STARTING
        )
        inst.last_error = None
        s.commit()
        self.publish(inst)
        timeout = self._stop_timeout(s, inst)
        self.spawn(self._restart(link, inst.id, timeout))
        return inst

    async def _restart(self, link: AgentLink, instance_id: str, stop_timeout: float) -> None:
        stopped = await self._command(
            link, Stop(id=link.next_id(), instance_id=instance_id), instance_id, stop_timeout
        )
        if stopped is None or not stopped.ok:
            return
        await self._command(
            link, Start(id=link.next_id(), instance_id=instance_id), instance_id, COMMAND_SLACK * 4
        )

    async def destroy(
        self, s: Session, inst: models.Instance, force: bool = False
    ) -> models.Instance:
        link = self.agents.get(inst.node_id)
        if link is None and not force:
            raise GdosError(
                ErrorCode.NODE_OFFLINE,
                f"node {inst.node_id} is offline; destroy with ?force=true to forget the "
                "instance without touching the node",
                {"node_id": inst.node_id},
            )
        if link is None:
            self._forget(s, inst)
            return inst
        if inst.state == InstanceState.DESTROYING:
            return inst
        inst.state = InstanceState.DESTROYING
        inst.desired_state = DesiredState.STOPPED
        s.commit()
        self.publish(inst)
        timeout = self._stop_timeout(s, inst) + 60
        self.spawn(self._destroy(link, inst.id, timeout))
        return inst

    async def _destroy(self, link: AgentLink, instance_id: str, timeout: float) -> None:
        msg = Destroy(id=link.next_id(), instance_id=instance_id)
        result = await self._command(link, msg, instance_id, timeout)
        if result is not None and result.ok:
            with self.db.session() as s:
                inst = s.get(models.Instance, instance_id)
                if inst is not None:
                    self._forget(s, inst)

    def _forget(self, s: Session, inst: models.Instance) -> None:
        out = instance_out(inst).model_copy(update={"state": "destroyed"})
        s.delete(inst)
        s.commit()
        self.hub.publish("instance", {**out.model_dump(), "deleted": True})
        for listener in self.listeners:
            listener(out)

    # -- agent-facing -----------------------------------------------------------------------

    def queue_reports(self, node_id: str, reports: list[InstanceReport]) -> None:
        """Reports as they arrive: applied at the end of this turn of the event loop, together
        with those of every other agent whose messages arrived in the same turn. A batch stop
        of 100 instances brings ~100 report messages from 10 agents in bursts; one transaction
        per burst instead of one per message halves the master's CPU for them. Order is kept:
        the flush is scheduled before any waiter a later message of the turn wakes."""
        self._queued.append((node_id, reports))
        if len(self._queued) == 1:
            asyncio.get_running_loop().call_soon(self.flush_reports)

    def flush_reports(self) -> None:
        """Apply what `queue_reports` holds (also called before anything reads it back)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        try:
            self.apply_reports(queued)
        except Exception:  # a callback of the loop: nobody else would see it
            log.exception("could not apply %d report messages", len(queued))

    def apply_reports(self, batches: list[tuple[str, list[InstanceReport]]]) -> None:
        """Reports of one or more nodes, in order, in one transaction (Core: the hot path).
        Identity comes from the socket: a node only changes its own instances."""
        flat = [(node_id, report) for node_id, reports in batches for report in reports]
        with self.db.engine.begin() as conn:
            rows = instance_rows.load(conn, {report.instance_id for _, report in flat})
            changes: dict[str, dict[str, Any]] = {}  # a later report of an instance wins
            for node_id, report in flat:
                row = rows.get(report.instance_id)
                if row is None or row["node_id"] != node_id:
                    log.info("node %s reported unknown instance %s", node_id, report.instance_id)
                    continue
                changes[row["id"]] = instance_rows.report_changes(row, report)
                row.update(changes[row["id"]])
            if not changes:
                return
            instance_rows.write(conn, changes)
        for instance_id in changes:
            self.publish_view(instance_rows.view(rows[instance_id]))

    def _apply(self, inst: models.Instance, report: InstanceReport) -> None:
        """`instance_rows.report_changes` on an ORM instance (the adoption path)."""
        current = {"state": inst.state, "last_error": inst.last_error, "user": inst.user}
        for key, value in instance_rows.report_changes(current, report).items():
            setattr(inst, key, value)

    async def on_hello(self, link: AgentLink, hello: Hello) -> list[str]:
        """Reconcile after a (re)connect; returns ids the agent runs that the master does not know.

        Core, not the ORM: after a master restart the whole fleet says hello within seconds
        (py-spy, 1,000 agents x 20 instances: 6.5 ms of the event loop per hello through the
        ORM, most of it the unit of work's per-row UPDATEs)."""
        self.flush_reports()  # what the previous connection said comes first
        reported = {r.instance_id: r for r in hello.instances}
        todo: list[tuple[str, str]] = []  # (action, instance id) to re-drive
        host = hello.host
        with self.db.engine.begin() as conn:
            conn.execute(
                update(NODES)
                .where(NODES.c.id == link.node_id)
                .values(
                    **accounts.host_columns(host),
                    agent_version=hello.agent_version,
                    last_seen=time.time(),
                )
            )
            rows = instance_rows.load_node(conn, link.node_id)
            changes: dict[str, dict[str, Any]] = {}
            for iid, row in rows.items():
                report = reported.get(iid)
                if report is None:
                    if row["state"] == InstanceState.DESTROYING:
                        todo.append(("forget", iid))
                    elif row["state"] == InstanceState.DEPLOYING:
                        todo.append(("deploy", iid))
                    else:
                        changes[iid] = {
                            "state": InstanceState.FAILED,
                            "pid": None,
                            "last_error": "the agent does not have this instance (files removed?)",
                        }
                    continue
                change = instance_rows.report_changes(row, report)
                if change["state"] == InstanceState.DESTROYING:
                    todo.append(("destroy", iid))
                elif (
                    row["desired_state"] == DesiredState.RUNNING
                    and report.state == InstanceState.STOPPED
                ):
                    change["state"] = InstanceState.STARTING  # a start that never arrived
                    todo.append(("start", iid))
                elif row["desired_state"] == DesiredState.STOPPED and report.state in ACTIVE_STATES:
                    change["state"] = InstanceState.STOPPING  # a stop that never arrived
                    todo.append(("stop", iid))
                changes[iid] = change
            # Only what changed is published: a fleet reconnecting must not flood consoles.
            # Each row is rendered once before and once after (a master restart renders every
            # instance of the fleet here).
            before = {iid: instance_rows.view(rows[iid]) for iid in changes}
            for iid, change in changes.items():
                rows[iid].update(change)
            after = {iid: instance_rows.view(rows[iid]) for iid in changes}
            changed = [iid for iid, view in after.items() if view != before[iid]]
            instance_rows.write(conn, {iid: changes[iid] for iid in changed})
        for iid in changed:
            self.publish_view(after[iid])
        if todo:  # rare (a command lost with the connection): the ORM is fine here
            with self.db.session() as s:
                for action, iid in todo:
                    inst = s.get(models.Instance, iid)
                    if inst is not None:
                        self._redrive(s, link, action, inst)  # commits what it changes
        self.reconciled.add(link.node_id)
        return sorted(set(reported) - set(rows))

    def _redrive(self, s: Session, link: AgentLink, action: str, inst: models.Instance) -> None:
        log.info("reconcile: %s %s on node %s", action, inst.name, link.node_id)
        if action == "forget":
            self._forget(s, inst)
        elif action == "deploy":
            self.spawn(self._send_deploy(link, self.spec_for(s, inst)))
        elif action == "start":
            msg: Start | Stop = Start(id=link.next_id(), instance_id=inst.id)
            self.spawn(self._command(link, msg, inst.id, COMMAND_SLACK * 4))
        elif action == "stop":
            msg = Stop(id=link.next_id(), instance_id=inst.id)
            self.spawn(self._command(link, msg, inst.id, self._stop_timeout(s, inst)))
        elif action == "destroy":
            self.spawn(self._destroy(link, inst.id, self._stop_timeout(s, inst) + 60))

    def mark_node_unknown(self, node_id: str | None = None) -> None:
        """A node went offline (or, with None, the master just started): its processes are
        out of sight. Pending deploys and destroys keep their state to be re-driven."""
        self.flush_reports()
        if node_id is None:
            self.reconciled.clear()
        else:
            self.reconciled.discard(node_id)
        # Core: at a master's start this is every instance of the fleet (21,000 rows through
        # the ORM took 3 s before the master answered).
        table = instance_rows.TABLE
        which: list[ColumnElement[bool]] = [
            table.c.state.not_in([*BUSY_STATES, InstanceState.UNKNOWN])
        ]
        if node_id is not None:
            which.append(table.c.node_id == node_id)
        with self.db.engine.begin() as conn:
            rows = [dict(row._mapping) for row in conn.execute(select(table).where(*which))]
            if rows:
                conn.execute(update(table).where(*which).values(state=InstanceState.UNKNOWN))
        for row in rows:
            row["state"] = InstanceState.UNKNOWN
            self.publish_view(instance_rows.view(row))
