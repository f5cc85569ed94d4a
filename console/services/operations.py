"""A whole system started or stopped: the master's batch operation, followed step by step.

Operation events carry every step; the steps table shows the operation followed (or a new one
starting). A slow poll is the safety net should an event be missed.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from PySide6.QtCore import QObject, Signal

from console.client import ClientError
from console.message import action, async_slot, info
from console.models.rows import OperationRow, StepRow, as_row
from console.models.tables import OperationStepModel
from console.services.feature import NOT_AVAILABLE
from console.services.fleet import FleetService
from console.services.session import Session

OPERATION_POLL = 2.0  # seconds between two reads of an operation no event has moved
FINISHED_STEPS = frozenset({"done", "skipped"})


class OperationsService(QObject):
    changed = Signal(str, str, int, int)  # system id, state, steps done, steps total
    shown = Signal(dict)  # the operation the steps table now shows (OperationOut)

    def __init__(self, session: Session, fleet: FleetService, tick_ms: int = 100) -> None:
        super().__init__()
        self.session = session
        self.fleet = fleet  # the names of nodes and systems
        self.steps = OperationStepModel(self, tick_ms)
        self.state = ""  # the shown operation's state
        self.current: OperationRow | None = None  # the operation the steps table shows
        self._done = asyncio.Event()
        session.on("operation", self.on_operation)
        session.logged_out.connect(lambda: self.steps.set_rows([]))

    def on_operation(self, data: dict[str, Any]) -> None:
        op = cast(OperationRow, data)
        if not op.get("id"):
            return
        current = self.current
        if current is None or op["id"] != current["id"]:
            if op.get("state") != "running" and current and current.get("state") == "running":
                return  # an old operation's last word while another one is shown
            self.show(op)
            return
        self._apply(op)

    def show(self, op: OperationRow) -> None:
        self.current = op.copy()
        steps = [self._step_row(s) for s in op.get("steps") or [] if isinstance(s, dict)]
        self.steps.set_rows(steps)
        self.shown.emit(dict(op))
        self._apply(op)

    def _apply(self, op: OperationRow) -> None:
        if self.current is not None:
            self.current.update(op)
        steps = [s for s in op.get("steps") or [] if isinstance(s, dict)]
        for step in steps:
            self.steps.update(self._step_row(step))
        state = str(op.get("state") or "running")
        self.state = state
        done = sum(1 for s in steps if s.get("state") in FINISHED_STEPS)
        self.changed.emit(str(op.get("system_id", "")), state, done, len(steps))
        if state != "running":
            self._done.set()

    def _step_row(self, step: StepRow) -> StepRow:
        node = str(step.get("node_id") or "")
        names = self.fleet.node_names
        return {**step, "node_name": names.get(node, node), "error": step.get("error")}

    def _shown(self, op_id: str) -> OperationRow | None:
        """The operation shown, if it is `op_id`."""
        current = self.current
        return current if current is not None and current["id"] == op_id else None

    @async_slot(str)
    @action("starting the system")
    async def start_system(self, system_id: str) -> str:
        return await self._run(system_id, start=True)

    @async_slot(str)
    @action("stopping the system")
    async def stop_system(self, system_id: str) -> str:
        return await self._run(system_id, start=False)

    async def _run(self, system_id: str, start: bool) -> str:
        """Start or stop the system level by level and follow it until it succeeds or fails."""
        client = self.session.require()
        try:
            if start:
                op = await client.start_system(system_id)
            else:
                op = await client.stop_system(system_id)
        except ClientError as exc:
            if exc.endpoint_missing:
                raise ClientError(
                    f"starting or stopping a whole system is {NOT_AVAILABLE} "
                    "(it needs a newer master)",
                    code="not_available",
                ) from None
            raise
        self._done = done = asyncio.Event()
        self.show(as_row(op, OperationRow))
        while self._shown(op.id) is not None and self.state == "running":
            try:
                await asyncio.wait_for(done.wait(), OPERATION_POLL)
            except TimeoutError:
                if self._shown(op.id) is not None:
                    self._apply(as_row(await client.operation(op.id), OperationRow))
        self.steps.flush()
        shown = self._shown(op.id)
        final = str(shown.get("state")) if shown is not None else ""
        if not final:  # another operation on the system superseded this one
            final = (await client.operation(op.id)).state
        name = self.fleet.system_names.get(system_id, system_id)
        if final == "failed":
            why = shown.get("error") if shown is not None else None
            raise ClientError(why or f"the operation on {name} failed", code="operation_failed")
        info(f"system {name} {'started' if start else 'stopped'}")
        return final
