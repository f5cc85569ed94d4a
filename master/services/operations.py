"""Batch start and stop of a whole system, level by level, as a durable `operation`.

Start climbs the levels (a module's `start_order`; an adopted instance's own `start_order`) in
ascending order: every instance of a level is started at once, one `batch` message per agent,
and the next level begins only when each instance of this one runs and, if it has a health
check, is healthy. Stop descends in reverse. The first failed step ends the climb: the
operation fails naming the instance and the reason, and nothing above it is started.

Agents' reports are the truth: a step advances when the instance it follows changes (the
orchestrator calls `_on_instance` for every change), never by polling. The operation row is
saved and published (topic `operation`) at most every `FLUSH_DELAY` seconds while it runs, and
at once when it ends. After a master restart, running operations are resumed once their nodes
have reconnected and been reconciled; since starting a running instance is a no-op, resuming
from the first level never starts anything twice.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database, get_or_404
from master.hub import Hub
from master.services import instance_rows
from master.services.agents import AgentRegistry
from master.services.commands import COMMAND_SLACK, START_TIMEOUT
from master.services.operation_steps import (
    DEFAULT_READY_TIMEOUT,
    Op,
    OpState,
    Step,
    StepState,
    operation_out,
)
from master.services.orchestrator import Orchestrator
from protocol.errors import GdosError
from protocol.messages import Batch
from protocol.rest import InstanceOut, OperationOut
from protocol.states import (
    ACTIVE_STATES,
    BUSY_STATES,
    DesiredState,
    HealthState,
    InstanceState,
)

log = logging.getLogger(__name__)

FLUSH_DELAY = 0.2
RESUME_GRACE = 60.0  # how long a resumed operation waits for its nodes to come back


class Operations:
    def __init__(
        self, db: Database, orchestrator: Orchestrator, agents: AgentRegistry, hub: Hub
    ) -> None:
        self.db = db
        self.orch = orchestrator
        self.agents = agents
        self.hub = hub
        self.live: dict[str, Op] = {}
        self._following: dict[str, Op] = {}  # instance id -> the live operation that has it
        self._views: dict[str, InstanceOut] = {}  # the newest view of each followed instance
        self._dirty: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        orchestrator.feed.listeners.append(self._on_instance)

    # -- API-facing -------------------------------------------------------------------------

    def begin(
        self,
        s: Session,
        system: models.System,
        kind: str,
        actor: str,
        ready_timeout: float | None = None,
    ) -> Op:
        for other in [op for op in self.live.values() if op.system_id == system.id]:
            self._end(other, OpState.FAILED, f"superseded by a newer {kind} operation")
        steps = self._plan(s, system.id)
        row = models.Operation(
            kind=kind,
            system_id=system.id,
            state=OpState.RUNNING,
            actor=actor,
            ready_timeout=ready_timeout,
            steps=[st.record() for st in steps],
        )
        s.add(row)
        s.commit()
        op = Op(
            id=row.id,
            kind=kind,
            system_id=system.id,
            actor=actor,
            created_at=row.created_at,
            steps=steps,
            ready_timeout=ready_timeout,
        )
        self._track(op)
        self.hub.publish("operation", op.view())
        op.task = self.orch.spawn(self._run(op))
        log.info("operation %s: %s system %s (%d instances)", op.id, kind, system.name, len(steps))
        return op

    def get(self, s: Session, operation_id: str) -> OperationOut:
        op = self.live.get(operation_id)
        if op is not None:
            return op.out()
        return operation_out(get_or_404(s, models.Operation, operation_id, "operation"))

    def _plan(self, s: Session, system_id: str) -> list[Step]:
        # Columns, not ORM entities: a system may span a fleet (1,000 instances loaded as
        # entities took ~60 ms of the event loop per operation).
        inst_t, mod_t, pkg_t = models.Instance, models.Module, models.Package
        instances = s.execute(
            select(
                inst_t.id,
                inst_t.name,
                inst_t.node_id,
                inst_t.module_id,
                inst_t.package_id,
                inst_t.adopted,
                inst_t.adoption,
            ).where(inst_t.system_id == system_id)
        ).all()
        start_order: dict[str, int] = {
            row.id: row.start_order
            for row in s.execute(
                select(mod_t.id, mod_t.start_order).where(mod_t.system_id == system_id)
            )
        }
        package_ids = {i.package_id for i in instances if i.package_id}
        manifests: dict[str, dict[str, Any]] = {
            row.id: row.manifest
            for row in s.execute(select(pkg_t.id, pkg_t.manifest).where(pkg_t.id.in_(package_ids)))
        }
        steps = []
        for inst in instances:
            order = start_order.get(inst.module_id or "")
            adoption = inst.adoption or {}
            source = manifests.get(inst.package_id or "", {}) if not inst.adopted else adoption
            health = source.get("health") or None
            level = order if order is not None else int(adoption.get("start_order", 0))
            steps.append(
                Step(
                    instance_id=inst.id,
                    name=inst.name,
                    node_id=inst.node_id,
                    level=level,
                    gated=health is not None,
                    ready_timeout=float((health or {}).get("ready_timeout", DEFAULT_READY_TIMEOUT)),
                    stop_timeout=float(source.get("stop_timeout", 10.0)),
                )
            )
        steps.sort(key=lambda st: (st.level, st.name))
        return steps

    # -- the climb --------------------------------------------------------------------------

    async def _run(self, op: Op) -> None:
        try:
            levels = sorted({st.level for st in op.steps}, reverse=op.kind == "stop")
            for level in levels:
                op.level = level
                steps = [st for st in op.steps if st.level == level]
                failure = await self._level(op, steps)
                if failure is not None:
                    self._end(op, OpState.FAILED, failure)
                    return
            self._end(op, OpState.SUCCEEDED)
        except asyncio.CancelledError:
            raise  # superseded (already ended) or the master is shutting down (resumed later)
        except Exception as exc:
            log.exception("operation %s failed unexpectedly", op.id)
            self._end(op, OpState.FAILED, f"internal error: {exc}")

    async def _level(self, op: Op, steps: list[Step]) -> str | None:
        starting = op.kind == "start"
        sends: dict[str, list[str]] = {}
        began = time.perf_counter()
        with self.db.engine.begin() as conn:  # Core: a level may hold hundreds of rows
            rows = instance_rows.load(conn, (st.instance_id for st in steps))
            problem = self._preflight(op, steps, rows)
            if problem is not None:
                return problem
            changes: dict[str, dict[str, Any]] = {}
            now = time.time()
            for st in steps:
                row = rows.get(st.instance_id)
                st.started_at, st.error = now, None
                if row is None:  # destroyed meanwhile: nothing to stop
                    self._finish_step(op, st, StepState.DONE)
                    continue
                state = row["state"]
                if starting:
                    change: dict[str, Any] = {"desired_state": DesiredState.RUNNING}
                    st.state = StepState.STARTING
                    if state not in (InstanceState.RUNNING, InstanceState.STARTING):
                        change.update(state=InstanceState.STARTING, last_error=None)
                        sends.setdefault(row["node_id"], []).append(row["id"])
                    # else: already up (or on its way): never a second process
                else:
                    change = {"desired_state": DesiredState.STOPPED}
                    st.state = StepState.STOPPING
                    if state in ACTIVE_STATES:
                        change["state"] = InstanceState.STOPPING
                    if state != InstanceState.STOPPED:
                        # exited/failed ones get the stop too: it cancels a pending restart
                        sends.setdefault(row["node_id"], []).append(row["id"])
                row.update(change)
                changes[row["id"]] = change
            instance_rows.write(conn, changes)
        for row in rows.values():
            self.orch.feed.publish_view(instance_rows.view(row))  # also refreshes our view of it
        self._touch(op)
        # Per node, from a map: a scan of the level per node is O(n^2) at a fleet's width
        # (1,000 nodes x 1,000 steps: ~50 ms of the loop per operation).
        stop_timeout = {st.instance_id: st.stop_timeout for st in steps}
        for node_id, ids in sends.items():
            timeout = (
                START_TIMEOUT if starting else max(stop_timeout[i] for i in ids) + COMMAND_SLACK
            )
            self.orch.spawn(self._send(op, node_id, "start" if starting else "stop", ids, timeout))
        sent = time.perf_counter()
        outcome = await self._settle(op, steps)
        log.info(
            "operation %s level %s: %d instances, commands out after %.0f ms, settled after %.0f ms",
            op.id,
            op.level,
            len(steps),
            (sent - began) * 1000,
            (time.perf_counter() - began) * 1000,
        )
        return outcome

    def _preflight(self, op: Op, steps: list[Step], rows: dict[str, dict[str, Any]]) -> str | None:
        """Refuse a level before touching any of it when one of its instances cannot move."""
        for st in steps:
            row = rows.get(st.instance_id)
            reason = None
            if row is None:
                if op.kind == "start":
                    reason = f"{st.name} was destroyed"
            elif row["state"] in BUSY_STATES:
                reason = f"{row['name']} is {row['state']}"
            elif not self.agents.is_online(row["node_id"]):
                reason = f"{row['name']}: node {row['node_id']} is offline"
            elif (
                op.kind == "start"
                and row["state"] not in ACTIVE_STATES
                and row["adopted"]
                and not (row["adoption"] or {}).get("start_command")
            ):
                reason = f"{row['name']} is not running and was adopted without a start command"
            if reason is not None:
                st.started_at = time.time()
                self._finish_step(op, st, StepState.FAILED, reason)
                for other in steps:
                    if not other.final:
                        self._finish_step(op, other, StepState.SKIPPED)
                return reason
        return None

    async def _send(
        self, op: Op, node_id: str, action: Literal["start", "stop"], ids: list[str], timeout: float
    ) -> None:
        link = self.agents.get(node_id)
        errors: dict[str, str] = {}
        if link is None:
            errors = dict.fromkeys(ids, f"node {node_id} went offline")
        else:
            msg = Batch(id=link.next_id(), action=action, instance_ids=ids)
            try:
                result = await link.request(msg, timeout)
            except GdosError as exc:
                errors = dict.fromkeys(ids, exc.message)
            else:
                for iid, err in (result.data.get("results") or {}).items():
                    if err:
                        errors[iid] = str(err.get("message") or f"{action} failed")
        # Only on errors: one answer per node, and a map of every step per answer is O(n^2).
        steps = {st.instance_id: st for st in op.steps} if errors else {}
        for iid, message in errors.items():
            self.orch.commands.note_failure(iid, message)
            st = steps.get(iid)
            if st is not None and not st.final and self.live.get(op.id) is op:
                self._finish_step(op, st, StepState.FAILED, f"{st.name}: {message}")
        op.changed.set()

    async def _settle(self, op: Op, steps: list[Step]) -> str | None:
        """Wait until every step of the level is done, or one fails, or one runs out of time."""
        loop = asyncio.get_running_loop()
        begun = loop.time()
        deadlines = {st.instance_id: begun + self._allowed(op, st) for st in steps}
        op.touched.update(deadlines)
        while True:
            op.changed.clear()
            touched, op.touched = op.touched, set()
            for st in steps:
                if not st.final and st.instance_id in touched:
                    self._evaluate(op, st)
            now = loop.time()
            for st in steps:
                if not st.final and now >= deadlines[st.instance_id]:
                    self._finish_step(op, st, StepState.FAILED, self._timeout_text(op, st))
            failed = next((st for st in steps if st.state == StepState.FAILED), None)
            if failed is not None:
                for st in steps:
                    if not st.final:
                        self._finish_step(
                            op, st, StepState.CANCELLED, f"the operation stopped at {failed.name}"
                        )
                return failed.error or f"{failed.name} failed"
            waiting = [st for st in steps if not st.final]
            if not waiting:
                return None
            until = min(deadlines[st.instance_id] for st in waiting) - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(op.changed.wait(), max(until, 0.001))

    @staticmethod
    def _allowed(op: Op, st: Step) -> float:
        """Seconds a step may take: to stop, to run, or to run and become healthy."""
        if op.kind == "stop":
            return st.stop_timeout + COMMAND_SLACK
        if st.gated:
            return op.ready_timeout or st.ready_timeout
        return START_TIMEOUT

    def _timeout_text(self, op: Op, st: Step) -> str:
        view = self._views.get(st.instance_id)
        if op.kind == "stop":
            return f"{st.name} did not stop within {self._allowed(op, st):g} s"
        if st.gated and view is not None and view.state == InstanceState.RUNNING:
            limit = self._allowed(op, st)
            why = f" (last probe: {view.health_detail})" if view.health_detail else ""
            return f"{st.name} did not become healthy within {limit:g} s{why}"
        state = view.state if view is not None else "unknown"
        return f"{st.name} is still {state} after {START_TIMEOUT:g} s"

    def _evaluate(self, op: Op, st: Step) -> None:
        view = self._views.get(st.instance_id)
        if view is None:
            return
        state = view.state
        if op.kind == "stop":
            if state in ("destroyed", *[str(x) for x in _DOWN]):
                self._finish_step(op, st, StepState.DONE)
            elif state == InstanceState.UNKNOWN:
                self._finish_step(op, st, StepState.FAILED, f"{st.name}: its node went offline")
            return
        if state == "destroyed":
            self._finish_step(op, st, StepState.FAILED, f"{st.name} was destroyed")
        elif state == InstanceState.RUNNING:
            if not st.gated or view.health == HealthState.HEALTHY:
                self._finish_step(op, st, StepState.DONE)
            elif st.state != StepState.WAITING_HEALTH:
                st.state = StepState.WAITING_HEALTH
                self._touch(op)
        elif state in (InstanceState.EXITED, InstanceState.FAILED):
            why = view.last_error or state
            self._finish_step(op, st, StepState.FAILED, f"{st.name} {state}: {why}")
        elif state == InstanceState.UNKNOWN:
            self._finish_step(op, st, StepState.FAILED, f"{st.name}: its node went offline")

    # -- bookkeeping ------------------------------------------------------------------------

    def _finish_step(self, op: Op, st: Step, state: StepState, error: str | None = None) -> None:
        st.state, st.error, st.finished_at = state, error, time.time()
        self._touch(op)

    def _track(self, op: Op) -> None:
        self.live[op.id] = op
        for st in op.steps:
            self._following[st.instance_id] = op

    def _on_instance(self, view: InstanceOut) -> None:
        op = self._following.get(view.id)
        if op is not None:
            self._views[view.id] = view
            op.touched.add(view.id)
            op.changed.set()

    def _end(self, op: Op, state: OpState, error: str | None = None) -> None:
        if self.live.get(op.id) is not op:
            return
        if op.task is not None and op.task is not asyncio.current_task():
            op.task.cancel()
        for st in op.steps:
            if st.state == StepState.PENDING:
                self._finish_step(op, st, StepState.SKIPPED)
            elif not st.final:
                self._finish_step(op, st, StepState.CANCELLED, error)
        op.state, op.error, op.finished_at = state, error, time.time()
        del self.live[op.id]
        for st in op.steps:
            if self._following.get(st.instance_id) is op:
                del self._following[st.instance_id]
                self._views.pop(st.instance_id, None)
        self._save([op])
        if state == OpState.FAILED:
            log.warning("operation %s (%s) failed: %s", op.id, op.kind, error)
        else:
            log.info("operation %s (%s) succeeded", op.id, op.kind)

    def _touch(self, op: Op) -> None:
        self._dirty.add(op.id)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        ops = [self.live[i] for i in self._dirty if i in self.live]
        self._dirty.clear()
        if ops:
            self._save(ops)

    def _save(self, ops: Iterable[Op]) -> None:
        ops = list(ops)
        with self.db.session() as s:
            for op in ops:
                row = s.get(models.Operation, op.id)
                if row is None:
                    continue
                row.state, row.error, row.level = str(op.state), op.error, op.level
                row.finished_at, row.resumed = op.finished_at, op.resumed
                row.steps = [st.record() for st in op.steps]
            s.commit()
        for op in ops:
            self._dirty.discard(op.id)
            self.hub.publish("operation", op.view())

    # -- master restart ----------------------------------------------------------------------

    def resume_all(self) -> None:
        """Pick up operations a previous master run left running."""
        with self.db.session() as s:
            rows = list(
                s.scalars(select(models.Operation).where(models.Operation.state == OpState.RUNNING))
            )
            for row in rows:
                steps = [Step.from_record(r) for r in row.steps or []]
                for st in steps:
                    st.state, st.error, st.finished_at = StepState.PENDING, None, None
                op = Op(
                    id=row.id,
                    kind=row.kind,
                    system_id=row.system_id,
                    actor=row.actor,
                    created_at=row.created_at,
                    steps=steps,
                    ready_timeout=row.ready_timeout,
                    level=row.level,
                    resumed=row.resumed + 1,
                )
                self._track(op)
                op.task = self.orch.spawn(self._resume(op))
                log.info("operation %s (%s) resumes after a master restart", op.id, op.kind)

    async def _resume(self, op: Op) -> None:
        self._touch(op)
        nodes = {st.node_id for st in op.steps}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESUME_GRACE
        # Wait for every node to say hello (its instances are `unknown` until then); one that
        # does not come back fails its steps with "offline" when its level is reached.
        while not nodes <= self.orch.reconciled and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await self._run(op)


_DOWN = (InstanceState.STOPPED, InstanceState.EXITED, InstanceState.FAILED)
