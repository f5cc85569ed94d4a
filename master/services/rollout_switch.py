"""A rollout's batch on the nodes: each instance switched (to its new release, or back to the one
it ran), then watched until it is ready: running and healthy, or, without a health check, up
for `min_ready_seconds`. Its steps change here; the run around it is master/services/rollouts.py's.
"""

import asyncio
import contextlib
import time
from typing import Any

from master.db import models
from master.db.session import Database
from master.services import rollout_plan
from master.services.operation_steps import Op, Step, StepState
from master.services.operation_store import OperationStore
from master.services.releases import Releases
from protocol.rest import InstanceOut

# A started step waiting to be ready: its step, the pid the switch started, its restart count
# then, and whether it has a health check.
Pending = dict[str, tuple[Step, int | None, int, bool]]


def finish(
    store: OperationStore, op: Op, st: Step, state: StepState, error: str | None = None
) -> None:
    st.state, st.error, st.finished_at = state, error, time.time()
    store.touch(op)


class Switcher:
    def __init__(
        self,
        db: Database,
        releases: Releases,
        store: OperationStore,
        views: dict[str, InstanceOut],
        cancelled: dict[str, str],
    ) -> None:
        self.db = db
        self.releases = releases
        self.store = store
        self.views = views  # the newest view of each followed instance (the runner's)
        self.cancelled = cancelled  # op id -> who cancelled it (the runner's)
        self._health: dict[str, dict[str, Any] | None] = {}  # package id -> its health check

    async def switch_all(self, op: Op, steps: list[Step], back: bool) -> str | None:
        """Switch each step's instance (to its new release, or `back`), then wait until the
        started ones are ready; the first failure (or, going back, None after all)."""
        done = StepState.ROLLED_BACK if back else StepState.DONE
        results = await asyncio.gather(*(self._switch_one(op, st, back, done) for st in steps))
        pending = {st.instance_id: (st, *started) for st, started in results if started}
        failed = next((st for st in steps if st.state == StepState.FAILED), None)
        if failed is not None and not back:
            return failed.error
        return await self._await_ready(op, pending, done, stop_at_first=not back)

    async def _switch_one(
        self, op: Op, st: Step, back: bool, done: StepState
    ) -> tuple[Step, tuple[int | None, int, bool] | None]:
        package = st.from_package if back else st.to_package
        assert package is not None
        report, error = await self.releases.switch(
            st.node_id, st.instance_id, package, st.was_running
        )
        if error is not None:
            what = "rollback failed" if back else "switch failed"
            finish(self.store, op, st, StepState.FAILED, f"{st.name}: {what}: {error}")
            return st, None
        if not st.was_running:
            finish(self.store, op, st, done, st.error if back else None)
            return st, None
        if not back:
            st.state = StepState.WAITING_HEALTH
            self.store.touch(op)
        report = report or {}
        gated = self._check_of(package) is not None
        return st, (report.get("pid"), int(report.get("restarts") or 0), gated)

    async def _await_ready(
        self,
        op: Op,
        pending: Pending,
        done: StepState,
        stop_at_first: bool,
    ) -> str | None:
        loop = asyncio.get_running_loop()
        min_ready = float((op.rollout or {}).get("min_ready_seconds", 0.0))
        deadlines = {}
        for iid, (st, _, _, gated) in pending.items():
            package = st.from_package if done == StepState.ROLLED_BACK else st.to_package
            limit = rollout_plan.ready_allowed(gated, op.ready_timeout, self._check_of(package))
            deadlines[iid] = (loop.time() + limit + (0 if gated else min_ready), limit)
        up_since: dict[str, float] = {}
        first: str | None = None
        while pending:
            op.changed.clear()
            now = loop.time()
            for iid, (st, pid, restarts, gated) in list(pending.items()):
                view = self.views.get(iid)
                moved = (
                    None if view is None else rollout_plan.readiness(st, view, gated, pid, restarts)
                )
                if moved is not None and moved[0] == StepState.DONE:
                    since = up_since.setdefault(iid, now)
                    if not gated and now - since < min_ready:
                        continue
                    moved = (done, st.error if done == StepState.ROLLED_BACK else None)
                elif moved is None:
                    up_since.pop(iid, None)
                    if now >= deadlines[iid][0]:
                        late = rollout_plan.not_ready_text(st, view, gated, deadlines[iid][1])
                        moved = (StepState.FAILED, late)
                if moved is None:
                    continue
                del pending[iid]
                state, why = moved
                if state == StepState.FAILED and done == StepState.ROLLED_BACK and why:
                    why = f"{st.name}: rollback failed: {why}"
                finish(self.store, op, st, state, why)
                if state == StepState.FAILED:
                    first = first or why
                    if stop_at_first:
                        return first
            if not pending:
                break
            if stop_at_first and op.id in self.cancelled:
                return f"cancelled by {self.cancelled[op.id]}"
            wake = min(d for d, _ in deadlines.values())
            if up_since:
                wake = min(wake, min(up_since.values()) + min_ready)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(op.changed.wait(), max(wake - loop.time(), 0.01))
        return first

    def _check_of(self, package_id: str | None) -> dict[str, Any] | None:
        if package_id is None:
            return None
        if package_id not in self._health:
            with self.db.session() as s:
                pkg = s.get(models.Package, package_id)
                self._health[package_id] = (pkg.manifest.get("health") or None) if pkg else None
        return self._health[package_id]
