"""Batch start and stop of a whole system, level by level, as a durable `operation`.

Start climbs the levels in ascending order: every instance of a level is started at once, one
`batch` message per agent, and the next level begins only when each instance of this one runs
and, if it has a health check, is healthy. Stop descends in reverse. The first failed step ends
the climb: the operation fails naming the instance and the reason, and nothing above it starts.

Agents' reports are the truth: a step advances when the instance it follows changes (the
instance feed calls `_on_instance`), never by polling. Decisions are master/services/
operation_plan.py's, keeping the row is master/services/operation_store.py's. After a master
restart, running operations resume once their nodes are reconciled; starting a running
instance is a no-op, so resuming from the first level never starts anything twice.

Several masters: an operation whose master died is taken over by the leader (`take_over`),
which keeps the steps as recorded and starts no step twice. It waits until the nodes have said
hello to a surviving master (that hello re-drives any start or stop the dead master wrote as
desired state but the agent never got); then a recorded final step stays as it is, and every
other step begins afresh from its instance's row, which the hello made the agent's truth:
a start is sent only to an instance that is down, a stop only to one that is not stopped.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from master import heap
from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services import instance_rows, instance_settings, operation_plan, ownership
from master.services.agents import AgentLink, AgentRegistry
from master.services.commands import COMMAND_SLACK, START_TIMEOUT
from master.services.instance_rows import Row
from master.services.operation_steps import FINAL_STEPS, Op, OpState, Step, StepState
from master.services.operation_store import OperationStore
from master.services.orchestrator import Orchestrator
from protocol.errors import GdosError
from protocol.messages import Batch, Settings
from protocol.rest import InstanceOut, OperationOut

log = logging.getLogger(__name__)

RESUME_GRACE = 60.0  # how long a resumed operation waits for its nodes to come back
BATCH_KINDS = ("start", "stop")  # rollouts and rollbacks are master/services/rollouts.py's
DISPATCH_SLICE = 50  # instances published per turn of the event loop
# Instances commanded per turn: the level's time is the agents', and at a fleet's width every
# turn between two slices also carries the answers of the agents commanded before (tens of ms
# each), so slices of 50 left the last agent of 1,000 twenty such turns behind the first.
COMMAND_SLICE = 200
# A level this wide holds full collections off while it goes out and its agents answer
# (master/heap.py): one would land in its turns, the loop's longest already.
DEFER_GC_AT = 100
# Seconds after the last wide level settles that full collections run again: the one held off
# then lands after the operation's end and its events, not in the same turn.
RESUME_GC_AFTER = 0.5


class Operations:
    def __init__(
        self, db: Database, orchestrator: Orchestrator, agents: AgentRegistry, hub: Hub
    ) -> None:
        self.db = db
        self.orch = orchestrator
        self.agents = agents
        self.store = OperationStore(db, hub)
        self.live: dict[str, Op] = {}
        self._following: dict[str, Op] = {}  # instance id -> the live operation that has it
        self._views: dict[str, InstanceOut] = {}  # the newest view of each followed instance
        # Per operation, the links its level's preflight found (a routed one carries the node's
        # epoch from before the level's commit: a hello elsewhere since re-drives the level).
        self._level_links: dict[str, dict[str, AgentLink | None]] = {}
        self._wide_levels = 0  # levels under way that hold full collections off
        self._resume_gc: asyncio.TimerHandle | None = None
        orchestrator.feed.listeners.append(self._on_instance)
        self.store.on_lost.append(self.let_go)

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
        steps = operation_plan.plan(s, system.id)
        op = self.store.create(s, kind, system.id, actor, steps, ready_timeout)
        self._track(op)
        self.store.publish(op)
        op.task = self.orch.spawn(self._run(op))
        log.info("operation %s: %s system %s (%d instances)", op.id, kind, system.name, len(steps))
        return op

    def cancel(self, operation_id: str, actor: str) -> Op | None:
        """End a running batch start or stop where it is (None: no such running operation)."""
        op = self.live.get(operation_id)
        if op is not None:
            self._end(op, OpState.FAILED, f"cancelled by {actor}")
        return op

    def get(self, s: Session, operation_id: str) -> OperationOut:
        op = self.live.get(operation_id)
        if op is not None:
            return op.out()
        return self.store.read(s, operation_id)

    # -- the climb --------------------------------------------------------------------------

    async def _run(self, op: Op) -> None:
        try:
            failed = next((st for st in op.steps if st.state == StepState.FAILED), None)
            if failed is not None:  # recorded by a master that died before ending it
                self._end(op, OpState.FAILED, failed.error or f"{failed.name} failed")
                return
            levels = sorted({st.level for st in op.steps}, reverse=op.kind == "stop")
            for level in levels:
                steps = [st for st in op.steps if st.level == level and not st.final]
                if not steps:
                    continue  # done before a take-over
                op.level = level
                failure = await self._wide(op, steps)
                if failure is not None:
                    self._end(op, OpState.FAILED, failure)
                    return
            self._end(op, OpState.SUCCEEDED)
        except asyncio.CancelledError:
            raise  # superseded (already ended) or the master is shutting down (resumed later)
        except Exception as exc:
            log.exception("operation %s failed unexpectedly", op.id)
            self._end(op, OpState.FAILED, f"internal error: {exc}")

    async def _wide(self, op: Op, steps: list[Step]) -> str | None:
        """`_level`, a wide one with full collections held off until it is settled."""
        if len(steps) < DEFER_GC_AT:
            return await self._level(op, steps)
        self._wide_levels += 1
        if self._resume_gc is not None:
            self._resume_gc.cancel()
            self._resume_gc = None
        heap.defer_full_collections()
        try:
            return await self._level(op, steps)
        finally:
            self._wide_levels -= 1
            if not self._wide_levels:
                self._resume_gc = asyncio.get_running_loop().call_later(
                    RESUME_GC_AFTER, heap.resume_full_collections
                )

    async def _level(self, op: Op, steps: list[Step]) -> str | None:
        if not self.store.drives(op.id):
            self.let_go(op.id)
            await asyncio.sleep(0)  # cancelled there: another master drives it now
        starting = op.kind == "start"
        sends: dict[str, list[str]] = {}
        settings: dict[str, tuple[Settings, dict[str, Any]]] = {}
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
                change, st.state, send = operation_plan.begin_step(starting, row["state"])
                if send:
                    sends.setdefault(row["node_id"], []).append(row["id"])
                row.update(change)
                changes[row["id"]] = change
            if starting:  # each start carries the instance's settings, recorded as applied
                started = [rows[i] for ids in sends.values() for i in ids]
                with Session(bind=conn) as s:
                    settings = instance_settings.for_rows(s, started)
                for iid, (_, recorded) in settings.items():
                    rows[iid].update(recorded)
                    changes[iid].update(recorded)
            instance_rows.write(conn, changes)
        for iid in rows:
            self._views.pop(iid, None)  # a view published from now on is newer than the rows
        self.store.touch(op)
        # Shielded: once the rows say `starting`, every command goes out even if the operation
        # is cancelled or superseded meanwhile (an instance would otherwise wait for nothing).
        await asyncio.shield(self.orch.spawn(self._dispatch(op, steps, rows, sends, settings)))
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

    async def _dispatch(
        self,
        op: Op,
        steps: list[Step],
        rows: dict[str, Row],
        sends: dict[str, list[str]],
        settings: dict[str, tuple[Settings, dict[str, Any]]],
    ) -> None:
        """Send each node its command, then publish the level's committed rows, a slice of
        nodes per turn of the event loop so that a fleet-wide level never holds the loop. The
        commands go first: the level's time is the agents'; a report that overtakes its row's
        view publishes a newer one, and the row's is then left out (`_views`)."""
        starting = op.kind == "start"
        action: Literal["start", "stop"] = "start" if starting else "stop"
        # Per node, from a map: a scan of the level per node is quadratic at a fleet's width.
        stop_timeout = {st.instance_id: st.stop_timeout for st in steps}
        by_node: dict[str, list[Row]] = {}
        for row in rows.values():
            by_node.setdefault(row["node_id"], []).append(row)
        decided_at = min((st.started_at for st in steps if st.started_at), default=0.0)
        links = self._level_links.pop(op.id, {})
        done = 0
        for node_id, node_rows in by_node.items():
            ids = sends.get(node_id)
            if ids:
                timeout = (
                    START_TIMEOUT if starting else max(stop_timeout[i] for i in ids) + COMMAND_SLACK
                )
                carried = {i: settings[i][0] for i in ids if i in settings} if starting else {}
                link = self.agents.get(node_id) or links.get(node_id)
                self.orch.spawn(
                    self._send(op, node_id, action, ids, timeout, carried, link, decided_at)
                )
            done += len(node_rows)
            if done >= COMMAND_SLICE:
                done = 0
                await asyncio.sleep(0)  # the commands spawned so far leave in the next turn
        await asyncio.sleep(0)
        unfollowed: list[str] = []  # the operation ended meanwhile: its newer views unknown
        for done, row in enumerate(rows.values(), 1):
            if self._following.get(row["id"]) is not op:
                unfollowed.append(row["id"])
            elif row["id"] not in self._views:  # else a report or a call published a newer one
                self.orch.feed.publish_view(instance_rows.view(row))  # also our view of it
            if done % DISPATCH_SLICE == 0:
                await asyncio.sleep(0)
        if unfollowed:  # as committed now: never older than a view published already
            with self.db.engine.connect() as conn:
                for row in instance_rows.load(conn, unfollowed).values():
                    self.orch.feed.publish_view(instance_rows.view(row))

    def _preflight(self, op: Op, steps: list[Step], rows: dict[str, dict[str, Any]]) -> str | None:
        """Refuse a level before touching any of it when one of its instances cannot move."""
        reachable: dict[str, AgentLink | None] = {}  # per node: through the master holding it
        self._level_links[op.id] = reachable
        for st in steps:
            row = rows.get(st.instance_id)
            online = row is not None and self._reachable(row["node_id"], reachable)
            reason = operation_plan.refusal(op.kind, st, row, online)
            if reason is not None:
                st.started_at = time.time()
                self._finish_step(op, st, StepState.FAILED, reason)
                for other in steps:
                    if not other.final:
                        self._finish_step(op, other, StepState.SKIPPED)
                self._level_links.pop(op.id, None)
                return reason
        return None

    async def _send(
        self,
        op: Op,
        node_id: str,
        action: Literal["start", "stop"],
        ids: list[str],
        timeout: float,
        settings: dict[str, Settings],
        link: AgentLink | None,
        decided_at: float,
    ) -> None:
        """`link`: the node's own, or the one through its master the level's preflight found
        (not looked up again: the node's hello elsewhere since re-drives the level)."""
        errors: dict[str, str] = {}
        if link is not None and link.greeted_since(decided_at):
            # The node's hello comes after the level's rows: it re-drives them, once.
            log.info("operation %s: node %s is greeting; its hello sends the level", op.id, node_id)
        elif link is None:
            errors = dict.fromkeys(ids, f"node {node_id} went offline")
        else:
            msg = Batch(id=link.next_id(), action=action, instance_ids=ids, settings=settings)
            try:
                result = await link.request(msg, timeout)
            except GdosError as exc:
                errors = dict.fromkeys(ids, exc.message)
            else:
                for iid, err in (result.data.get("results") or {}).items():
                    if err:
                        errors[iid] = str(err.get("message") or f"{action} failed")
        # Only on errors: one answer per node, and a map of every step per answer is quadratic.
        steps = {st.instance_id: st for st in op.steps} if errors else {}
        for iid, message in errors.items():
            self.orch.commands.note_failure(iid, message)
            st = steps.get(iid)
            if st is not None and not st.final and self.live.get(op.id) is op:
                self._finish_step(op, st, StepState.FAILED, f"{st.name}: {message}")
        op.changed.set()

    def _reachable(self, node_id: str, known: dict[str, AgentLink | None]) -> bool:
        if self.agents.is_online(node_id):
            return True
        if node_id not in known:
            known[node_id] = self.agents.reach(node_id)
        return known[node_id] is not None

    async def _settle(self, op: Op, steps: list[Step]) -> str | None:
        """Wait until every step of the level is done, or one fails, or one runs out of time.
        Each wake looks only at the steps touched since the last (a report, an answer, a step
        finished): a fleet-wide level wakes once per loop turn while its agents answer, and a
        scan of the whole level per wake was quadratic."""
        loop = asyncio.get_running_loop()
        begun = loop.time()
        allowed = {
            st.instance_id: operation_plan.allowed(op.kind, st, op.ready_timeout) for st in steps
        }
        deadlines = {iid: begun + seconds for iid, seconds in allowed.items()}
        # Every step, final ones too: one an agent's answer failed before this began is seen.
        waiting = {st.instance_id: st for st in steps}
        by_deadline = sorted(deadlines, key=deadlines.__getitem__)
        next_due = 0  # index of the earliest deadline that may still be waiting

        def earliest() -> float:
            nonlocal next_due
            while by_deadline[next_due] not in waiting:
                next_due += 1
            return deadlines[by_deadline[next_due]]

        op.touched.update(deadlines)
        while True:
            op.changed.clear()
            touched, op.touched = op.touched, set()
            failed = False
            for iid in touched:
                st = waiting.get(iid)
                if st is None:
                    continue
                if not st.final:
                    self._evaluate(op, st)
                if st.final:
                    del waiting[iid]
                    failed = failed or st.state == StepState.FAILED
            now = loop.time()
            if waiting and now >= earliest():
                for iid, st in list(waiting.items()):
                    if now >= deadlines[iid]:
                        view = self._views.get(iid)
                        why = operation_plan.timeout_text(op.kind, st, view, allowed[iid])
                        self._finish_step(op, st, StepState.FAILED, why)
                        del waiting[iid]
                        failed = True
            if failed:  # the first failed step in the level's order names the failure
                first = next(st for st in steps if st.state == StepState.FAILED)
                for st in steps:
                    if not st.final:
                        self._finish_step(
                            op, st, StepState.CANCELLED, f"the operation stopped at {first.name}"
                        )
                return first.error or f"{first.name} failed"
            if not waiting:
                return None
            until = earliest() - now
            # In this task (not wait_for's own): woken in the turn a report's views set the
            # event, so the level's end is published with them rather than a turn behind.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(until, 0.001)):
                    await op.changed.wait()

    def _evaluate(self, op: Op, st: Step) -> None:
        view = self._views.get(st.instance_id)
        moved = None if view is None else operation_plan.outcome(op.kind, st, view)
        if moved is None:
            return
        state, error = moved
        if state in FINAL_STEPS:
            self._finish_step(op, st, state, error)
        elif st.state != state:
            st.state = state
            self.store.touch(op)

    # -- bookkeeping ------------------------------------------------------------------------

    def _finish_step(self, op: Op, st: Step, state: StepState, error: str | None = None) -> None:
        st.state, st.error, st.finished_at = state, error, time.time()
        op.touched.add(st.instance_id)  # `_settle` looks at touched steps only
        self.store.touch(op)

    def _track(self, op: Op) -> None:
        self.live[op.id] = op
        for st in op.steps:
            self._following[st.instance_id] = op

    def _untrack(self, op: Op) -> None:
        self.live.pop(op.id, None)
        for st in op.steps:
            if self._following.get(st.instance_id) is op:
                del self._following[st.instance_id]
                self._views.pop(st.instance_id, None)

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
        self._untrack(op)
        self.store.save([op])
        if state == OpState.FAILED:
            log.warning("operation %s (%s) failed: %s", op.id, op.kind, error)
        else:
            log.info("operation %s (%s) succeeded", op.id, op.kind)

    # -- master restart ----------------------------------------------------------------------

    def resume_all(self) -> None:
        """Pick up operations a previous master run left running."""
        for op in self.store.left_running(BATCH_KINDS):
            self._track(op)
            op.task = self.orch.spawn(self._resume(op))
            log.info("operation %s (%s) resumes after a master restart", op.id, op.kind)

    async def _resume(self, op: Op) -> None:
        self.store.touch(op)
        # Wait for every node to say hello (its instances are `unknown` until then); one that
        # does not come back fails its steps with "offline" when its level is reached.
        await wait_for_nodes(self.orch, {st.node_id for st in op.steps})
        await self._run(op)

    # -- several masters ---------------------------------------------------------------------

    def take_over(self, op: Op, driver: str | None) -> None:
        """Drive a batch operation whose master (`driver`) died, from its recorded steps."""
        self._track(op)
        op.task = self.orch.spawn(self._take_over(op, driver))
        log.info("operation %s (%s) taken over from master %s", op.id, op.kind, driver)

    async def _take_over(self, op: Op, driver: str | None) -> None:
        self.store.touch(op)
        await wait_for_nodes(self.orch, {st.node_id for st in op.steps if not st.final}, driver)
        for st in op.steps:
            if not st.final:
                st.state, st.error = StepState.PENDING, None  # begun again from its row
        await self._run(op)

    def let_go(self, operation_id: str) -> None:
        """Another master drives this operation now: stop following it, writing nothing."""
        let_go_of(self.live.get(operation_id), self._untrack)


def let_go_of(op: Op | None, untrack: Callable[[Op], None]) -> None:
    """Stop driving an operation another master has taken over, writing nothing."""
    if op is None:
        return
    log.warning("operation %s is driven by another master now: letting it go", op.id)
    if op.task is not None:
        op.task.cancel()
    untrack(op)


async def wait_for_nodes(
    orch: Orchestrator, nodes: set[str], driver: str | None = None, grace: float = RESUME_GRACE
) -> None:
    """Until every node has said hello to this master, or (taken over from `driver`, which
    died) is held by another master, which applied its hello; at most `grace` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    me = orch.agents.master_id
    while loop.time() < deadline:
        away = nodes - orch.reconciled
        if not away:
            return
        if orch.db.is_postgres and driver != me:
            with orch.db.engine.connect() as conn:
                held = conn.execute(
                    select(ownership.NODES.c.id, ownership.NODES.c.master_id).where(
                        ownership.NODES.c.id.in_(list(away))
                    )
                ).all()
            if all(row[1] not in (None, driver, me) for row in held) and len(held) == len(away):
                return
        await asyncio.sleep(0.1)
