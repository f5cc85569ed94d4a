"""Rollouts and rollbacks of modules, as durable operations beside batch start and stop.

Every target node first prepares the new release beside the running one, all in parallel, and
nothing stops before every prepare succeeded. Then batches go one after another, level by
level: each instance of a batch is switched (stop, switch, start when it ran) and the batch is
done when they run and are healthy (without a health check: have stayed up
`min_ready_seconds`). A canary pauses after its first batch until resumed. The first failed
batch stops the rollout; with `auto_rollback` (and always on a cancel) every instance it
switched goes back to the release it ran before, kept on its node: nothing is downloaded. The
module's version changes only when the rollout succeeds.

Each step's progress is saved before its switch is sent, so a restarted master resumes the
rollout where it was: the agent's switch is idempotent, so nothing starts twice.
Decisions are master/services/rollout_plan.py's; the commands master/services/releases.py's.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database
from master.services import audit, instance_settings, rollout_plan
from master.services.agents import AgentRegistry
from master.services.operation_steps import FINAL_STEPS, Op, OpState, Step, StepState
from master.services.operations import Operations, let_go_of, wait_for_nodes
from master.services.orchestrator import Orchestrator
from master.services.releases import RELEASE_KINDS, Releases, check_os
from master.services.rollout_plan import InstanceRow, Target
from master.services.rollout_switch import Switcher, finish
from master.services.serializers import module_out
from protocol.errors import ErrorCode, GdosError
from protocol.rest import InstanceOut
from protocol.rest_releases import RolloutSettings
from protocol.states import DesiredState

log = logging.getLogger(__name__)

# A step waiting for the node's answer or its instance: what a restarted master sends again.
IN_FLIGHT = frozenset({StepState.SWITCHING, StepState.WAITING_HEALTH})


class Rollouts:
    def __init__(
        self,
        db: Database,
        orchestrator: Orchestrator,
        agents: AgentRegistry,
        operations: Operations,
        releases: Releases,
    ) -> None:
        self.db = db
        self.orch = orchestrator
        self.agents = agents
        self.ops = operations
        self.store = operations.store
        self.releases = releases
        self.live: dict[str, Op] = {}
        self._following: dict[str, Op] = {}
        self._views: dict[str, InstanceOut] = {}
        self._wake: dict[str, asyncio.Event] = {}  # a paused canary's resume (or cancel)
        self._cancelled: dict[str, str] = {}  # op id -> who cancelled it
        self.switcher = Switcher(db, releases, self.store, self._views, self._cancelled)
        orchestrator.feed.listeners.append(self._on_instance)
        self.store.on_lost.append(self.let_go)

    # -- API-facing -------------------------------------------------------------------------

    def running_on(self, system_id: str) -> Op | None:
        """The operation running on a system (a rollout, rollback, or batch start or stop)."""
        for op in [*self.live.values(), *self.ops.live.values()]:
            if op.system_id == system_id:
                return op
        return None

    def refuse_if_busy(self, system_id: str, only_releases: bool = False) -> None:
        """409 naming the operation that runs on the system (with `only_releases`, a rollout or
        rollback: a batch start or stop supersedes another batch, never a rollout)."""
        op = self.running_on(system_id)
        if op is None or (only_releases and op.kind not in RELEASE_KINDS):
            return
        raise GdosError(
            ErrorCode.CONFLICT,
            f"operation {op.id} ({op.kind}) is running on this system: wait for it to end, or "
            f"cancel it (POST /api/v1/operations/{op.id}/cancel)",
            {"operation_id": op.id, "kind": op.kind},
        )

    def begin(
        self,
        s: Session,
        kind: str,
        system: models.System,
        targets: list[Target],
        params: RolloutSettings,
        actor: str,
        module_id: str | None,
    ) -> Op:
        """Check everything that can be checked before anything moves, then start."""
        self.refuse_if_busy(system.id)
        rows = s.scalars(
            select(models.Instance).where(
                models.Instance.module_id.in_([t.module_id for t in targets]),
                models.Instance.adopted.is_(False),
            )
        ).all()
        for target in targets:
            pkg = s.get(models.Package, target.package_id)
            assert pkg is not None
            nodes = {r.node_id for r in rows if r.module_id == target.module_id}
            check_os(pkg, [n for n in (s.get(models.Node, i) for i in nodes) if n is not None])
        steps = rollout_plan.plan(targets, (_instance_row(r) for r in rows))
        batches = rollout_plan.assign_batches(steps, params.batch_size, params.canary)
        rollout: dict[str, Any] = {
            "modules": {
                t.module_id: {"name": t.module_name, "from": t.from_version, "to": t.version}
                for t in targets
            },
            "batch_size": params.batch_size,
            "canary": params.canary,
            "auto_rollback": params.auto_rollback,
            "min_ready_seconds": params.min_ready_seconds,
            "pause_seconds": params.pause_seconds,
            "phase": "preparing",
            "batch": None,
            "batches": batches,
            "canary_batch": rollout_plan.canary_batch(steps, params.canary),
        }
        op = self.store.create(
            s, kind, system.id, actor, steps, params.ready_timeout, module_id, rollout
        )
        self._track(op)
        self.store.publish(op)
        op.task = self.orch.spawn(self._run(op))
        what = ", ".join(f"{t.module_name} -> {t.version}" for t in targets)
        log.info("operation %s: %s of %s (%d instances)", op.id, kind, what, len(steps))
        return op

    def resume(self, operation_id: str) -> Op:
        op = self._live_release(operation_id)
        if not op.paused:
            raise GdosError(
                ErrorCode.INVALID_STATE, f"operation {op.id} is not paused", {"paused": False}
            )
        self._wake[op.id].set()
        return op

    def cancel(self, operation_id: str, actor: str) -> Op:
        """Stop a rollout or rollback: nothing more is switched, and what it switched goes back."""
        op = self._live_release(operation_id)
        self._cancelled.setdefault(op.id, actor)
        self._wake[op.id].set()
        op.changed.set()
        return op

    def _live_release(self, operation_id: str) -> Op:
        op = self.live.get(operation_id)
        if op is None:
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"operation {operation_id} is not a running rollout or rollback",
                {"operation_id": operation_id},
            )
        return op

    # -- the run --------------------------------------------------------------------------------

    async def _run(self, op: Op) -> None:
        r = self._settings(op)
        try:
            failure = None
            if r["phase"] == "preparing":
                failure = await self._prepare_all(op)
                if failure is not None:
                    self._end(op, OpState.FAILED, failure)
                    return
                self._phase(op, "rolling")
            if r["phase"] in ("rolling", "paused"):
                failure = await self._roll(op)
                if failure is None:
                    self._succeed(op)
                    return
            failure = failure or r.get("failure") or "the rollout was interrupted"
            if r["phase"] == "rolling_back" or r["auto_rollback"] or op.id in self._cancelled:
                await self._roll_back(op, failure)
            else:
                self._end(op, OpState.FAILED, failure)
        except asyncio.CancelledError:
            raise  # the master is shutting down: resumed at its next start
        except Exception as exc:
            log.exception("operation %s failed unexpectedly", op.id)
            self._end(op, OpState.FAILED, f"internal error: {exc}")

    async def _prepare_all(self, op: Op) -> str | None:
        """Every target node fetches and unpacks first, in parallel; nothing has stopped yet."""
        todo = [st for st in op.steps if not st.final and not st.touched]
        for st in todo:
            st.state, st.started_at = StepState.PREPARING, time.time()
        self.store.touch(op)

        async def one(st: Step) -> None:
            assert st.to_package is not None
            error = await self.releases.prepare(st.node_id, st.instance_id, st.to_package)
            if error is None:
                st.state = StepState.PREPARED
                self.store.touch(op)
            else:
                self._finish(op, st, StepState.FAILED, f"{st.name}: prepare failed: {error}")

        await asyncio.gather(*(one(st) for st in todo))
        failed = [st for st in todo if st.state == StepState.FAILED]
        if not failed:
            return None
        for st in todo:
            if st.state == StepState.PREPARED:
                self._finish(op, st, StepState.SKIPPED)
        return failed[0].error

    async def _roll(self, op: Op) -> str | None:
        r = self._settings(op)
        batches = int(r["batches"] or 0)
        for b in range(1, batches + 1):
            steps = [st for st in op.steps if st.batch == b]
            if any(not st.final for st in steps):
                if op.id in self._cancelled:
                    return f"cancelled by {self._cancelled[op.id]}"
                r["batch"], op.level = b, steps[0].level
                failure = await self._batch(op, steps)
                if failure is not None:
                    return failure
            if b == batches:
                break
            if b == r.get("canary_batch") and not r.get("canary_passed"):
                await self._pause(op)
                r["canary_passed"] = True
                self._phase(op, "rolling")
            elif r["pause_seconds"] > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake[op.id].wait(), r["pause_seconds"])
            if op.id in self._cancelled:
                return f"cancelled by {self._cancelled[op.id]}"
        return None

    async def _pause(self, op: Op) -> None:
        op.paused = True
        self._wake[op.id].clear()
        self._phase(op, "paused")
        log.info("operation %s: canary done; paused until resumed", op.id)
        await self._wake[op.id].wait()
        op.paused = False

    async def _batch(self, op: Op, steps: list[Step]) -> str | None:
        todo = [st for st in steps if not st.final]
        now = time.time()
        for st in todo:
            st.state, st.touched, st.error = StepState.SWITCHING, True, None
            st.started_at = st.started_at or now
        self.store.save([op])  # before any switch is sent: a restarted master sends them again
        if self.live.get(op.id) is not op:  # taken over meanwhile: the save was refused
            await asyncio.sleep(0)  # the task was cancelled: it ends here
        return await self.switcher.switch_all(op, todo, back=False)

    async def _roll_back(self, op: Op, failure: str) -> None:
        self._settings(op)["failure"] = failure  # for a master that resumes the rollback
        self._phase(op, "rolling_back")
        for st in op.steps:
            if not st.touched and not st.final:
                self._finish(op, st, StepState.SKIPPED)
        back = [st for st in op.steps if st.touched and st.state != StepState.ROLLED_BACK]
        for st in back:
            st.state = StepState.ROLLING_BACK
        self.store.save([op])
        if self.live.get(op.id) is not op:  # taken over meanwhile: the save was refused
            await asyncio.sleep(0)  # the task was cancelled: it ends here
        await self.switcher.switch_all(op, [st for st in back if st.from_package], back=True)
        rolled = [st for st in back if st.state == StepState.ROLLED_BACK]
        stuck = [st for st in back if st.state != StepState.ROLLED_BACK]
        self._end(op, OpState.FAILED, rollout_plan.summary(failure, rolled, stuck))

    def _succeed(self, op: Op) -> None:
        modules = self._settings(op)["modules"]
        with self.db.session() as s:
            moved_modules = []
            for module_id, moved in modules.items():
                mod = s.get(models.Module, module_id)
                if mod is not None:
                    mod.version = moved["to"]
                    moved_modules.append(mod)
            s.flush()
            changed = instance_settings.refresh_drift(s, instance_settings.of_modules(s, modules))
            s.commit()
            for mod in moved_modules:  # a module's version changed: the same event as a PATCH
                self.orch.feed.hub.publish("module", module_out(mod).model_dump())
            for inst in changed:
                self.orch.feed.publish(inst)
        self._end(op, OpState.SUCCEEDED)

    # -- bookkeeping ------------------------------------------------------------------------

    @staticmethod
    def _settings(op: Op) -> dict[str, Any]:
        assert op.rollout is not None, "a rollout operation carries its settings"
        return op.rollout

    def _phase(self, op: Op, phase: str) -> None:
        self._settings(op)["phase"] = phase
        self.store.save([op])

    def _finish(self, op: Op, st: Step, state: StepState, error: str | None = None) -> None:
        finish(self.store, op, st, state, error)

    def _track(self, op: Op) -> None:
        self.live[op.id] = op
        self._wake[op.id] = asyncio.Event()
        for st in op.steps:
            self._following[st.instance_id] = op

    def _untrack(self, op: Op) -> None:
        self.live.pop(op.id, None)
        self._wake.pop(op.id, None)
        self._cancelled.pop(op.id, None)
        for st in op.steps:
            if self._following.get(st.instance_id) is op:
                del self._following[st.instance_id]
                self._views.pop(st.instance_id, None)

    def _on_instance(self, view: InstanceOut) -> None:
        op = self._following.get(view.id)
        if op is not None:
            self._views[view.id] = view
            op.changed.set()

    def _end(self, op: Op, state: OpState, error: str | None = None) -> None:
        if self.live.get(op.id) is not op:
            return
        if op.task is not None and op.task is not asyncio.current_task():
            op.task.cancel()
        for st in op.steps:
            if st.state in (StepState.PENDING, StepState.PREPARED):
                self._finish(op, st, StepState.SKIPPED)
            elif st.state not in FINAL_STEPS:
                self._finish(op, st, StepState.CANCELLED, error)
        op.state, op.error, op.finished_at, op.paused = state, error, time.time(), False
        self._settings(op)["phase"] = "done"
        self._untrack(op)
        self.store.save([op])
        modules = self._settings(op)["modules"]
        try:
            audit.record(
                self.db,
                actor=op.actor,
                action=f"{op.kind}_finished",
                target=",".join(f"module={m}" for m in modules),
                result="ok" if state == OpState.SUCCEEDED else "failed",
                detail={"operation": op.id, "modules": modules, "error": error},
            )
        except Exception:  # the operation has ended either way; its row says how
            log.exception("could not write the audit row of operation %s", op.id)
        if state == OpState.FAILED:
            log.warning("operation %s (%s) failed: %s", op.id, op.kind, error)
        else:
            log.info("operation %s (%s) succeeded", op.id, op.kind)

    # -- master restart ----------------------------------------------------------------------

    def resume_all(self) -> None:
        """Pick up rollouts and rollbacks a previous master run left, each step where it was."""
        for op in self.store.left_running(RELEASE_KINDS, reset=False):
            self._track(op)
            op.task = self.orch.spawn(self._resume(op))
            log.info("operation %s (%s) resumes after a master restart", op.id, op.kind)

    def take_over(self, op: Op, driver: str | None) -> None:
        """Drive a rollout or rollback whose master (`driver`) died, each step where it was
        recorded (a switch is idempotent on the agent: nothing starts twice)."""
        self._track(op)
        op.task = self.orch.spawn(self._resume(op, driver))
        log.info("operation %s (%s) taken over from master %s", op.id, op.kind, driver)

    def let_go(self, operation_id: str) -> None:
        """Another master drives this operation now: stop following it, writing nothing."""
        let_go_of(self.live.get(operation_id), self._untrack)

    async def _resume(self, op: Op, driver: str | None = None) -> None:
        await wait_for_nodes(self.orch, {st.node_id for st in op.steps}, driver)
        r = self._settings(op)
        if r["phase"] == "paused":
            op.paused = True
            if not r.get("canary_passed"):
                r["phase"] = "rolling"  # the batch loop pauses again after the canary batch
        for st in op.steps:
            if st.state == StepState.PREPARING:
                st.state = StepState.PENDING  # prepared again (a kept release is not fetched)
        self.store.touch(op)
        await self._run(op)


def _instance_row(inst: models.Instance) -> InstanceRow:
    return InstanceRow(
        id=inst.id,
        name=inst.name,
        node_id=inst.node_id,
        module_id=inst.module_id or "",
        package_id=inst.package_id,
        version=inst.version,
        running=inst.desired_state == DesiredState.RUNNING,
    )
