"""Batch operations kept: the row written when one begins, saved and published (topic
`operation`) at most every `FLUSH_DELAY` seconds while it runs and at once when it ends, and
read back after a master restart."""

import asyncio
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database, get_or_404
from master.hub import Hub
from master.services.operation_steps import Op, OpState, Step, StepState, operation_out
from protocol.rest import OperationOut

FLUSH_DELAY = 0.2


class OperationStore:
    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self.hub = hub
        self._dirty: dict[str, Op] = {}
        self._flush_handle: asyncio.TimerHandle | None = None

    def publish(self, op: Op) -> None:
        self.hub.publish("operation", op.view())

    def create(
        self,
        s: Session,
        kind: str,
        system_id: str,
        actor: str,
        steps: list[Step],
        ready_timeout: float | None,
        module_id: str | None = None,
        rollout: dict[str, Any] | None = None,
    ) -> Op:
        row = models.Operation(
            kind=kind,
            system_id=system_id,
            state=OpState.RUNNING,
            actor=actor,
            ready_timeout=ready_timeout,
            steps=[st.record() for st in steps],
            module_id=module_id,
            rollout=rollout,
        )
        s.add(row)
        s.commit()
        op = Op(
            id=row.id,
            kind=kind,
            system_id=system_id,
            actor=actor,
            created_at=row.created_at,
            steps=steps,
            ready_timeout=ready_timeout,
            module_id=module_id,
            rollout=rollout,
        )
        return op

    def read(self, s: Session, operation_id: str) -> OperationOut:
        return operation_out(get_or_404(s, models.Operation, operation_id, "operation"))

    def touch(self, op: Op) -> None:
        """Save and publish `op` soon, together with the others that change meanwhile."""
        self._dirty[op.id] = op
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        ops = [op for op in self._dirty.values() if op.state == OpState.RUNNING]
        self._dirty.clear()
        if ops:
            self.save(ops)

    def save(self, ops: Iterable[Op]) -> None:
        ops = list(ops)
        with self.db.session() as s:
            for op in ops:
                row = s.get(models.Operation, op.id)
                if row is None:
                    continue
                row.state, row.error, row.level = str(op.state), op.error, op.level
                row.finished_at, row.resumed = op.finished_at, op.resumed
                row.steps = [st.record() for st in op.steps]
                row.paused = op.paused
                row.rollout = dict(op.rollout) if op.rollout is not None else None
            s.commit()
        for op in ops:
            self._dirty.pop(op.id, None)
            self.publish(op)

    def left_running(self, kinds: Iterable[str], reset: bool = True) -> list[Op]:
        """Operations of these kinds a previous master run left running; with `reset`, their
        steps pending again (batch operations redo every level; rollouts keep each step's
        progress)."""
        with self.db.session() as s:
            rows = s.scalars(
                select(models.Operation).where(
                    models.Operation.state == OpState.RUNNING,
                    models.Operation.kind.in_(list(kinds)),
                )
            )
            ops = []
            for row in rows:
                steps = [Step.from_record(r) for r in row.steps or []]
                for st in steps if reset else ():
                    st.state, st.error, st.finished_at = StepState.PENDING, None, None
                ops.append(
                    Op(
                        id=row.id,
                        kind=row.kind,
                        system_id=row.system_id,
                        actor=row.actor,
                        created_at=row.created_at,
                        steps=steps,
                        ready_timeout=row.ready_timeout,
                        level=row.level,
                        resumed=row.resumed + 1,
                        module_id=row.module_id,
                        paused=row.paused,
                        rollout=row.rollout,
                    )
                )
        return ops
