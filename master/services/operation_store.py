"""Batch operations kept: the row written when one begins, saved and published (topic
`operation`) at most every `flush_delay` seconds while it runs (0.2 s, longer for an operation
of more than 200 steps) and at once when it ends, and read back after a master restart.

Several masters: each row names the master driving it (`master_id`), and a save writes only
rows this master still drives; one another master took over (its driver was found dead) is
not written, and the runners are told to let it go (`on_lost`), as a lost node is fenced.
"""

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import msgspec
from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Table,
    TypeDecorator,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database, get_or_404
from master.hub import Hub
from master.services.operation_steps import Op, OpState, Step, StepState, operation_out
from protocol.rest import OperationOut

FLUSH_DELAY = 0.2
MAX_FLUSH_DELAY = 1.0
STEPS_PER_SECOND = 1000  # of a running operation saved and published per second, at most


def flush_delay(steps: int) -> float:
    """Seconds between saves of a running operation of `steps` steps. Each save encodes every
    step and publishes them all (about 200 KB and 3 ms of CPU at 1,000 steps, then each
    console's frame): at a fleet's width five a second fell just while the agents answered.
    The instance events show each step's progress meanwhile."""
    return min(MAX_FLUSH_DELAY, max(FLUSH_DELAY, steps / STEPS_PER_SECOND))


TABLE = cast(Table, models.Operation.__table__)
_encode = msgspec.json.Encoder().encode  # several times faster than json.dumps


class _Encoded(TypeDecorator[Any]):
    """A JSON column's value bound as the text `_encode` made of it."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


# One statement object for every save (its cache key computed once): the columns an
# operation changes while it runs, its steps encoded already.
_SAVED = ("state", "error", "level", "finished_at", "resumed", "paused", "rollout")
_SAVE = (
    update(TABLE)
    .where(TABLE.c.id == bindparam("b_id"))
    .values(
        {name: bindparam(name, type_=TABLE.c[name].type) for name in _SAVED}
        | {"steps": bindparam("steps", type_=_Encoded())}
    )
)
_SAVE_FENCED = _SAVE.where(TABLE.c.master_id == bindparam("b_master"))
_CREATE = insert(TABLE).values(steps=bindparam("steps", type_=_Encoded()))


class OperationStore:
    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self.hub = hub
        # This master, written on the operations it begins or takes over (PostgreSQL only:
        # on SQLite one master drives everything and nothing is fenced).
        self.master_id: str | None = None
        self.on_lost: list[Callable[[str], None]] = []  # called with an operation taken over
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
        op = Op(
            id=models.new_id(),
            kind=kind,
            system_id=system_id,
            actor=actor,
            created_at=time.time(),
            steps=steps,
            ready_timeout=ready_timeout,
            module_id=module_id,
            rollout=rollout,
            master_id=self.master_id,
        )
        fixed: dict[str, Any] = {"id": op.id, "kind": kind, "system_id": system_id, "actor": actor}
        fixed |= {"created_at": op.created_at, "ready_timeout": ready_timeout}
        fixed |= {"module_id": module_id, "master_id": self.master_id}
        changing = _saved(op, self.master_id)
        s.execute(_CREATE, fixed | {name: changing[name] for name in (*_SAVED, "steps")})
        s.commit()
        return op

    def read(self, s: Session, operation_id: str) -> OperationOut:
        return operation_out(get_or_404(s, models.Operation, operation_id, "operation"))

    def touch(self, op: Op) -> None:
        """Save and publish `op` soon, together with the others that change meanwhile."""
        self._dirty[op.id] = op
        if self._flush_handle is None:
            delay = flush_delay(len(op.steps))
            self._flush_handle = asyncio.get_running_loop().call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        ops = [op for op in self._dirty.values() if op.state == OpState.RUNNING]
        self._dirty.clear()
        if ops:
            self.save(ops)

    def save(self, ops: Iterable[Op]) -> None:
        """Write each operation's row, then publish it: nothing is seen ended before it is saved.
        One Core UPDATE per operation (no ORM read of the row and its old steps first)."""
        ops = list(ops)
        lost: list[str] = []
        fenced = self.master_id is not None
        with self.db.engine.begin() as conn:
            for op in ops:
                # Fenced (PostgreSQL): only a row this master still drives; the UPDATE locks it,
                # so a take-over of this row waits until this save commits.
                done = conn.execute(_SAVE_FENCED if fenced else _SAVE, _saved(op, self.master_id))
                if fenced and done.rowcount != 1 and _exists(conn, op.id):
                    lost.append(op.id)
        for op in ops:
            self._dirty.pop(op.id, None)
            if op.id not in lost:
                self.publish(op)
        for op_id in lost:
            for callback in list(self.on_lost):
                callback(op_id)

    def left_running(self, kinds: Iterable[str], reset: bool = True) -> list[Op]:
        """Operations of these kinds a previous run of this master left running (on SQLite:
        any); with `reset`, their steps pending again (batch operations redo every level;
        rollouts keep each step's progress)."""
        with self.db.session() as s:
            query = select(models.Operation).where(
                models.Operation.state == OpState.RUNNING,
                models.Operation.kind.in_(list(kinds)),
            )
            if self.master_id is not None:
                query = query.where(models.Operation.master_id == self.master_id)
            return [_op(row, reset) for row in s.scalars(query)]

    def drives(self, operation_id: str) -> bool:
        """Does this master still drive the operation (always on SQLite)? Asked before a
        level's commands: a master that was stopped for a while may have been taken over."""
        if self.master_id is None:
            return True
        with self.db.engine.connect() as conn:
            driver = conn.execute(
                select(models.Operation.master_id).where(models.Operation.id == operation_id)
            ).scalar()
        return driver == self.master_id

    def orphans(self, gone: Iterable[str]) -> list[tuple[str, str | None]]:
        """(id, driver) of the running operations whose driver is one of these dead masters,
        or none (begun before masters were recorded)."""
        driver = models.Operation.master_id
        with self.db.session() as s:
            rows = s.execute(
                select(models.Operation.id, driver).where(
                    models.Operation.state == OpState.RUNNING,
                    or_(driver.is_(None), driver.in_(list(gone))),
                )
            )
            return [(row[0], row[1]) for row in rows]

    def take_over(self, operation_id: str, driver: str | None) -> Op | None:
        """Make this master the driver of a running operation whose driver was `driver`
        (compare-and-set: None when another master took it first, or it ended); its steps as
        recorded."""
        table = cast(Table, models.Operation.__table__)
        with self.db.session() as s:
            taken = s.execute(
                update(table)
                .where(
                    table.c.id == operation_id,
                    table.c.state == OpState.RUNNING,
                    table.c.master_id.is_(None) if driver is None else table.c.master_id == driver,
                )
                .values(master_id=self.master_id)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                s.rollback()
                return None
            row = s.get(models.Operation, operation_id)
            s.commit()
            assert row is not None
            return _op(row, reset=False)


def _saved(op: Op, master_id: str | None) -> dict[str, Any]:
    """The parameters of `_SAVE` for `op`: what changes while an operation runs."""
    return {
        "b_id": op.id,
        "b_master": master_id,
        "state": str(op.state),
        "error": op.error,
        "level": op.level,
        "finished_at": op.finished_at,
        "resumed": op.resumed,
        "steps": _encode([st.record() for st in op.steps]).decode(),
        "paused": op.paused,
        "rollout": dict(op.rollout) if op.rollout is not None else None,
    }


def _exists(conn: Connection, operation_id: str) -> bool:
    return conn.execute(select(TABLE.c.id).where(TABLE.c.id == operation_id)).first() is not None


def _op(row: models.Operation, reset: bool) -> Op:
    """An operation row in memory; with `reset`, every step pending again."""
    steps = [Step.from_record(r) for r in row.steps or []]
    for st in steps if reset else ():
        st.state, st.error, st.finished_at = StepState.PENDING, None, None
    return Op(
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
        master_id=row.master_id,
    )
