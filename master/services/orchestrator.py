"""Instance lifecycle: the master's desired state, the commands it sends, and what agents report.

API calls change the desired state, answer at once (202) and send the command in the
background (master/services/commands.py); the agents' reports are the truth about processes
(master/services/reports.py). After any reconnect, `on_hello` applies what
master/services/reconcile.py decides and re-drives what was interrupted.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from master.config import Settings
from master.db import models
from master.db.session import Database, lock_by_id, lock_row, retry_conflicts
from master.hub import Hub
from master.services import instance_rows, instance_settings, ownership
from master.services.agents import AgentLink, AgentRegistry
from master.services.commands import (
    DESTROY_EXTRA,
    START_TIMEOUT,
    Commands,
    spec_for,
    start_settings,
    stop_timeout,
)
from master.services.hellos import HelloQueue
from master.services.instance_feed import InstanceFeed
from master.services.reconcile import Action
from master.services.reports import ReportQueue
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import Hello, Start, Stop
from protocol.states import ACTIVE_STATES, BUSY_STATES, DesiredState, InstanceState

log = logging.getLogger(__name__)


class Orchestrator:
    def __init__(self, db: Database, agents: AgentRegistry, hub: Hub, settings: Settings) -> None:
        self.db = db
        self.agents = agents
        self.settings = settings
        self.feed = InstanceFeed(hub)
        self.commands = Commands(db, self.feed)
        self.reports = ReportQueue(db, self.feed)
        self.hellos = HelloQueue(
            db, self.feed, self.reports, self.commands.interrupted_restarts, agents
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # Nodes whose `hello` has been applied since they (or this master) last went away.
        self.reconciled: set[str] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self.reports.flush()
        self.hellos.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- API-facing -------------------------------------------------------------------------

    def resolve_package(self, s: Session, name: str, version: str | None) -> models.Package:
        q = select(models.Package).where(models.Package.name == name)
        if version is not None:
            q = q.where(models.Package.version == version)
        # FOR SHARE (PostgreSQL): a delete of this package waits until what uses it is saved.
        q = q.order_by(models.Package.uploaded_at.desc()).limit(1).with_for_update(read=True)
        pkg = s.scalars(q).first()
        if pkg is None:
            what = f"{name} {version}" if version else name
            raise GdosError(
                ErrorCode.NOT_FOUND, f"no package {what} has been uploaded", {"package": name}
            )
        return pkg

    async def deploy(self, s: Session, mod: models.Module, node: models.Node) -> models.Instance:
        with _unlocked_on_error(s):
            pkg = self.resolve_package(s, mod.package_name, mod.version)
            manifest = Manifest.from_data(pkg.manifest)
            if manifest.os and node.os and manifest.os != node.os:
                raise GdosError(
                    ErrorCode.OS_MISMATCH,
                    f"package {pkg.name} {pkg.version} is for {manifest.os}; node "
                    f"{node.hostname} runs {node.os}",
                )
            link = self.agents.require(node.id)
            inst = self._insert_instance(s, mod, node, pkg, link)
            spec = spec_for(s, inst)
            s.commit()
            self.feed.publish(inst)
            self.spawn(self.commands.deploy(link, spec))
            return inst

    def _insert_instance(
        self,
        s: Session,
        mod: models.Module,
        node: models.Node,
        pkg: models.Package,
        link: AgentLink,
    ) -> models.Instance:
        # Deploys to one system take turns for a name (several masters), and see a delete of
        # the system or of the node.
        if not lock_by_id(s, models.System, mod.system_id):
            raise GdosError(ErrorCode.NOT_FOUND, f"no system {mod.system_id}")
        lock_row(s, node, share=True)
        if node.revoked:
            raise GdosError(ErrorCode.NOT_FOUND, f"no node {node.id}")
        self._usable(node.id, link, node.epoch if self.db.is_postgres else None)
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
            module_index=instance_settings.next_index(s, mod.id),
        )
        s.add(inst)
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            raise GdosError(ErrorCode.CONFLICT, "another deploy took that name; retry") from None
        return inst

    def check_startable(self, inst: models.Instance) -> None:
        """An adopted process without a start command can be watched and stopped, not started."""
        if inst.adopted and not (inst.adoption or {}).get("start_command"):
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"{inst.name} was adopted without a start command: GDOS cannot start it",
                {"instance_id": inst.id},
            )

    def _check_controllable(self, s: Session, inst: models.Instance) -> AgentLink:
        epoch = self._pin_node(s, inst.node_id)
        lock_row(s, inst)  # the state checked is the state changed, whichever master asks
        if inst.state in BUSY_STATES:
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"instance {inst.name} is {inst.state}; wait until that finishes",
                {"state": inst.state},
            )
        link = self._usable(inst.node_id, self.agents.require(inst.node_id), epoch)
        assert link is not None
        return link

    def _pin_node(self, s: Session, node_id: str) -> int | None:
        """The node's epoch, its row locked until this call commits (PostgreSQL; None on
        SQLite), taken before the instance's row as a hello takes them. A hello elsewhere
        then comes after this call's write and re-drives it; the command this call sends goes
        only with the epoch seen here, so the node gets one or the other, never both."""
        if not self.db.is_postgres:
            return None
        return ownership.pin(s.connection(), node_id)

    def _usable(self, node_id: str, link: AgentLink | None, epoch: int | None) -> AgentLink | None:
        """`link` if a command may go down it: not while the node's hello is still being
        applied (that hello re-drives what this call writes), nor once the node said hello
        to another master (its epoch is no longer `epoch`, the node's pinned one)."""
        if link is None:
            return None
        if link.greeting:
            raise GdosError(
                ErrorCode.NODE_OFFLINE,
                f"node {node_id} is connecting to this master; nothing was done: try again "
                "in a moment",
                {"node_id": node_id},
            )
        if epoch is not None and link.epoch is not None and link.epoch != epoch:
            self.agents.detach(link)  # a stale link: the node said hello to another master since
            raise GdosError(
                ErrorCode.NODE_OFFLINE,
                f"node {node_id} is connected to another master now; send this there",
                {"node_id": node_id},
            )
        return link

    async def start(self, s: Session, inst: models.Instance) -> models.Instance:
        with _unlocked_on_error(s):
            link = self._check_controllable(s, inst)
            if inst.state not in ACTIVE_STATES:
                self.check_startable(inst)
            inst.desired_state = DesiredState.RUNNING
            if inst.state in ACTIVE_STATES - {InstanceState.STOPPING}:
                s.commit()
                return inst  # already starting or running: never a second process
            inst.state = InstanceState.STARTING
            inst.last_error = None
            settings = start_settings(s, inst)
            s.commit()
            self.feed.publish(inst)
            msg = Start(id=link.next_id(), instance_id=inst.id, settings=settings)
            self.spawn(self.commands.send(link, msg, inst.id, START_TIMEOUT))
            return inst

    async def stop(self, s: Session, inst: models.Instance) -> models.Instance:
        with _unlocked_on_error(s):
            link = self._check_controllable(s, inst)
            inst.desired_state = DesiredState.STOPPED
            if inst.state == InstanceState.STOPPED:
                s.commit()
                return inst
            # Sent for exited and failed instances too: the agent then cancels a pending restart.
            inst.state = InstanceState.STOPPING
            s.commit()
            self.feed.publish(inst)
            msg = Stop(id=link.next_id(), instance_id=inst.id)
            self.spawn(self.commands.send(link, msg, inst.id, stop_timeout(s, inst)))
            return inst

    async def restart(self, s: Session, inst: models.Instance) -> models.Instance:
        with _unlocked_on_error(s):
            link = self._check_controllable(s, inst)
            self.check_startable(inst)
            inst.desired_state = DesiredState.RUNNING
            inst.state = (
                InstanceState.STOPPING if inst.state in ACTIVE_STATES else InstanceState.STARTING
            )
            inst.last_error = None
            settings = start_settings(s, inst)
            s.commit()
            self.feed.publish(inst)
            self.spawn(self.commands.restart(link, inst.id, stop_timeout(s, inst), settings))
            return inst

    async def destroy(
        self, s: Session, inst: models.Instance, force: bool = False
    ) -> models.Instance:
        with _unlocked_on_error(s):
            epoch = self._pin_node(s, inst.node_id)
            lock_row(s, inst)
            link = self._usable(inst.node_id, self.agents.reach(inst.node_id), epoch)
            if link is None and not force:
                raise GdosError(
                    ErrorCode.NODE_OFFLINE,
                    f"node {inst.node_id} is offline; destroy with ?force=true to forget the "
                    "instance without touching the node",
                    {"node_id": inst.node_id},
                )
            if link is None:
                self.commands.forget(s, inst)
                return inst
            if inst.state == InstanceState.DESTROYING:
                s.commit()  # nothing to change: let go of the row now, not at the session's close
                return inst
            inst.state = InstanceState.DESTROYING
            inst.desired_state = DesiredState.STOPPED
            s.commit()
            self.feed.publish(inst)
            self.spawn(self.commands.destroy(link, inst.id, stop_timeout(s, inst) + DESTROY_EXTRA))
            return inst

        # -- agent-facing -----------------------------------------------------------------------

    async def on_hello(self, link: AgentLink, hello: Hello) -> list[str]:
        """Reconcile after a (re)connect; returns ids the agent runs that the master does not know.
        Batched with the other hellos of this turn (master/services/hellos.py)."""
        decided = await self.hellos.submit(link.node_id, hello, link)
        if decided.actions:  # rare (a command lost with the connection): the ORM is fine here
            with self.db.session() as s:
                for action, iid in decided.actions:
                    inst = s.get(models.Instance, iid)
                    if inst is not None:
                        self._redrive(s, link, action, inst)  # commits what it changes
        self.reconciled.add(link.node_id)
        return decided.unmanaged

    def _redrive(self, s: Session, link: AgentLink, action: Action, inst: models.Instance) -> None:
        log.info("reconcile: %s %s on node %s", action, inst.name, link.node_id)
        if action == "forget":
            self.commands.forget(s, inst)
        elif action == "deploy":
            spec = spec_for(s, inst)
            s.commit()
            self.spawn(self.commands.deploy(link, spec))
        elif action == "start":
            settings = start_settings(s, inst)
            s.commit()
            msg: Start | Stop = Start(id=link.next_id(), instance_id=inst.id, settings=settings)
            self.spawn(self.commands.send(link, msg, inst.id, START_TIMEOUT))
        elif action == "stop":
            msg = Stop(id=link.next_id(), instance_id=inst.id)
            self.spawn(self.commands.send(link, msg, inst.id, stop_timeout(s, inst)))
        elif action == "destroy":
            timeout = stop_timeout(s, inst) + DESTROY_EXTRA
            self.spawn(self.commands.destroy(link, inst.id, timeout))

    def mark_all_unknown_unannounced(self) -> None:
        """A single master starts: every instance's process is out of sight until its node's
        hello. One statement and no views: nothing listens yet, and the caches load after it."""
        self.reconciled.clear()
        table = instance_rows.TABLE
        with self.db.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.state.not_in([*BUSY_STATES, InstanceState.UNKNOWN]))
                .values(state=InstanceState.UNKNOWN)
            )

    def mark_node_unknown(
        self,
        node_id: str | None = None,
        fence: Callable[[Connection], Any] | None = None,
    ) -> bool:
        """A node went offline (or, with None, the master just started): its processes are
        out of sight. Pending deploys and destroys keep their state to be re-driven.

        `fence(conn)`, run first in the same transaction: False means this master no longer
        holds the node (nothing is marked); anything else is a condition on node rows that
        limits which nodes' instances are marked (at start: those no online master holds).
        Returns whether the fence let it through."""
        self.reports.flush()
        if node_id is None:
            self.reconciled.clear()
        else:
            self.reconciled.discard(node_id)
        # Core: at a master's start this is every instance of the fleet.
        table = instance_rows.TABLE
        which: list[ColumnElement[bool]] = [
            table.c.state.not_in([*BUSY_STATES, InstanceState.UNKNOWN])
        ]
        if node_id is not None:
            which.append(table.c.node_id == node_id)

        def mark() -> list[dict[str, Any]] | None:
            where = list(which)
            with self.db.engine.begin() as conn:
                held = True if fence is None else fence(conn)
                if held is False:
                    return None
                if held is not True:
                    nodes = select(ownership.NODES.c.id).where(held).scalar_subquery()
                    where.append(table.c.node_id.in_(nodes))
                # Locked in id order, as every other writer of many instance rows does.
                chosen = select(table).where(*where).order_by(table.c.id).with_for_update()
                rows = instance_rows.rows(conn.execute(chosen))
                if rows:
                    conn.execute(update(table).where(*where).values(state=InstanceState.UNKNOWN))
            return rows

        rows = retry_conflicts(mark)
        if rows is None:
            return False
        for row in rows:
            row["state"] = InstanceState.UNKNOWN
            self.feed.publish_view(instance_rows.view(row))
        return True


@contextlib.contextmanager
def _unlocked_on_error(s: Session) -> Iterator[None]:
    """A failed request lets go of the rows it locked at once, on the event loop: its session
    is closed later, in a worker thread the loop must schedule, and a hello batch waiting on
    the loop for one of those rows would wait for ever."""
    try:
        yield
    except BaseException:
        s.rollback()
        raise
