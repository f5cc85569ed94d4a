"""Commands for a node another online master holds: the master the API call reached (the
origin) writes the command to the `commands` table and signals the holder (the target) on the
bus; the target sends it down its own link with the same id, only under the node's epoch
the origin decided it in (still the node's and the link's: a hello since re-drives the node's
desired state itself), writes the agent's result and signals the origin back.

A target claims a row with one conditional UPDATE, so a command runs at most once whatever
the signals do; agents also run each id at most once. A command its target never claims is
withdrawn (it never runs); one whose target dies mid-way fails with a sentence saying so, and
the node's desired state, in the database, is re-driven by the hello it says to a survivor.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import msgspec
import sqlalchemy.exc
from sqlalchemy import Float, Table, delete, literal_column, select

from master.db import models
from master.db.session import Database
from master.services import ownership
from master.services.agents import AgentLink, AgentRegistry
from master.services.bus import Bus
from master.services.cluster_events import ClusterEvents
from protocol.errors import ErrorCode, GdosError
from protocol.messages import MASTER_MESSAGE, Result, WireError
from protocol.wire import Struct

log = logging.getLogger(__name__)

TABLE = cast(Table, models.Command.__table__)
CLAIM_TIMEOUT = 5.0  # a target that has not taken a command by then is not going to
WATCH = 0.5  # seconds between looks at the target's liveness while waiting
KEEP = 3600.0  # seconds a row is kept (by the database's clock) before pruning
PRUNE_EVERY = 60.0
_NOW = literal_column("extract(epoch from clock_timestamp())", Float)
_RESULT = msgspec.json.Decoder(Result)
PREFIX = "gdos_cmd_"  # the statements below spell it too

# One statement each, on the bus's sending connection: a signal in a statement goes with it.
SEND = """WITH c AS (
  INSERT INTO commands (id, node_id, origin, target, epoch, body, timeout, state, created_at)
  VALUES (%(id)s, %(node)s, %(origin)s, %(target)s, %(epoch)s, %(body)s, %(timeout)s, 'queued',
          extract(epoch from clock_timestamp()))
  RETURNING id, node_id)
SELECT pg_notify('gdos_cmd_' || %(target)s, 'run:' || id || ':' || node_id) FROM c"""
# Taken only under the epoch the origin decided it in, still the node's and the link's: a
# later hello re-drives the node's desired state itself.
CLAIM = """UPDATE commands SET state = 'running'
WHERE id = %(id)s AND state = 'queued' AND target = %(me)s AND epoch = %(epoch)s AND EXISTS (
  SELECT 1 FROM nodes WHERE nodes.id = commands.node_id AND nodes.epoch = %(epoch)s)
RETURNING body, timeout, origin"""
ANSWER = """WITH d AS (
  UPDATE commands SET state = 'done', result = %(answer)s
  WHERE id = %(id)s AND state = ANY(%(states)s) RETURNING origin)
SELECT pg_notify('gdos_cmd_' || origin, 'done:' || %(id)s) FROM d"""
COLLECT = "DELETE FROM commands WHERE id = %(id)s AND state = 'done' RETURNING result"
WITHDRAW = "DELETE FROM commands WHERE id = %(id)s AND state = 'queued' RETURNING id"
QUEUED = "SELECT id, node_id FROM commands WHERE target = %(me)s AND state = 'queued'"


def channel(master_id: str) -> str:
    return PREFIX + master_id


class _NoChannel:
    async def send_text(self, data: str) -> None:
        raise AssertionError("a remote link sends through its master")

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


class RemoteLink(AgentLink):
    """A node held by another online master, with the same `request` as a local link."""

    def __init__(self, node_id: str, target: str, epoch: int, router: "RemoteCommands") -> None:
        super().__init__(node_id, _NoChannel())
        self.target = target
        self.epoch = epoch
        self.master_id = router.me
        self.router = router
        self.asked_at = self.made_at = 0.0  # when its holder was looked up, and found (debug)

    async def request(self, msg: Struct, timeout: float) -> Result:
        return await self.router.send(self, msg, timeout)


class RemoteCommands:
    def __init__(self, db: Database, agents: AgentRegistry, bus: Bus) -> None:
        self.db = db
        self.agents = agents
        self.bus = bus
        self._waiting: dict[str, asyncio.Future[Result]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._signalled: dict[str, float] = {}  # command id -> when its signal came (debug)
        # Events published before a command reach its target before the node's answer does.
        self.events: ClusterEvents | None = None

    @property
    def me(self) -> str:
        return self.agents.master_id or ""

    def attach(self) -> None:
        """Route this master's commands for other masters' nodes, and take theirs (call once
        this master is registered)."""
        self.agents.remote = self.link_for
        self.bus.on(channel(self.me), self._on_signal)
        self.bus.on_reconnect(self.resync)

    async def run(self) -> None:
        """Take what was queued for this master while it was away; then prune old rows."""
        await self.take_missed()
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                self.prune()
            except Exception:
                log.warning("pruning routed commands failed", exc_info=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def link_for(self, node_id: str) -> AgentLink | None:
        asked = time.time()
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(ownership.NODES.c.master_id, ownership.NODES.c.epoch).where(
                    ownership.NODES.c.id == node_id
                )
            ).first()
        if row is None or row.master_id is None or row.master_id == self.me:
            return None
        if self.agents.holder(node_id, row.master_id) != row.master_id:
            return None  # its master is not online
        link = RemoteLink(node_id, row.master_id, int(row.epoch), self)
        link.asked_at, link.made_at = asked, time.time()
        return link

    # -- the origin's side ----------------------------------------------------------------

    async def send(self, link: RemoteLink, msg: Struct, timeout: float) -> Result:
        import psycopg

        cmd_id: str = getattr(msg, "id")  # noqa: B009 - every command model has an id
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting[cmd_id] = fut
        row = {
            "id": cmd_id,
            "node": link.node_id,
            "origin": self.me,
            "target": link.target,
            "epoch": link.epoch,
            "body": msg.to_json(),
            "timeout": timeout,
        }
        began = time.time()
        try:
            try:
                if self.events is not None:  # committed with the events published before it
                    await self.events.carry(SEND, row)
                else:
                    await self.bus.fetch(SEND, row)
            except (psycopg.errors.UniqueViolation, sqlalchemy.exc.IntegrityError):
                pass  # written by a first attempt whose answer the connection lost
            except (psycopg.Error, sqlalchemy.exc.DBAPIError) as exc:
                raise GdosError(
                    ErrorCode.UNAVAILABLE,
                    f"the command for node {link.node_id} could not be passed to its master "
                    f"through the database: {str(exc).strip() or type(exc).__name__}",
                ) from None
            written = time.time()
            queued = time.time()
            result = await self._wait(link, cmd_id, fut, timeout)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "routed %s origin: asked %.6f linked %.6f began %.6f written %.6f "
                    "queued %.6f answered %.6f",
                    cmd_id,
                    link.asked_at,
                    link.made_at,
                    began,
                    written,
                    queued,
                    time.time(),
                )
            return result
        finally:
            self._waiting.pop(cmd_id, None)

    async def _wait(
        self, link: RemoteLink, cmd_id: str, fut: asyncio.Future[Result], timeout: float
    ) -> Result:
        loop = asyncio.get_running_loop()
        began = loop.time()
        claimed = False
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(fut), WATCH)
            waited = loop.time() - began
            if not claimed and waited >= min(CLAIM_TIMEOUT, timeout):
                claimed = not await self._withdraw(cmd_id)
                if not claimed:
                    raise GdosError(
                        ErrorCode.NODE_OFFLINE,
                        f"master {link.target}, which holds node {link.node_id}, did not take "
                        "the command; nothing was sent to the node: try again",
                        {"node_id": link.node_id, "master_id": link.target},
                    )
            if link.target not in self.agents.peers:
                raise GdosError(
                    ErrorCode.NODE_OFFLINE,
                    f"master {link.target}, which held node {link.node_id}, went away before "
                    "the node answered; the node's desired state is applied again when it "
                    "connects to another master",
                    {"node_id": link.node_id, "master_id": link.target},
                )
            if waited >= timeout:
                raise GdosError(
                    ErrorCode.TIMEOUT, f"node {link.node_id} did not answer within {timeout:.0f} s"
                )

    async def _withdraw(self, cmd_id: str) -> bool:
        """Take back a command nobody has taken: True when it is gone and can never run."""
        return bool(await self.bus.fetch(WITHDRAW, {"id": cmd_id}))

    async def _collect(self, cmd_id: str) -> None:
        fut = self._waiting.get(cmd_id)
        if fut is None or fut.done():
            return
        found = await self.bus.fetch(COLLECT, {"id": cmd_id})
        if not found or fut.done():
            return
        text: str = found[0][0] or "{}"
        answer = msgspec.json.decode(text)
        if answer.get("type") == "result":
            fut.set_result(_RESULT.decode(text))
        else:
            error = answer.get("error") or {}
            fut.set_exception(
                GdosError(
                    ErrorCode(error.get("code", ErrorCode.INTERNAL)),
                    error.get("message", "the command failed on the node's master"),
                    error.get("details") or {},
                )
            )

    # -- the target's side ----------------------------------------------------------------

    def _on_signal(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind == "run":
            cmd_id, _, node_id = rest.rpartition(":")
            if log.isEnabledFor(logging.DEBUG):
                self._signalled[cmd_id] = time.time()
            self._spawn(self._run(cmd_id, node_id))
        elif kind == "done":
            self._spawn(self._collect(rest))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The database away: the origin's wait ends by its own checks, never hangs.
            log.warning("a routed command step failed: %s", task.exception())

    async def _run(self, cmd_id: str, node_id: str) -> None:
        """Take the command (once, whoever signals it) and send it down this master's link,
        only while the link is the node's current one; else answer that the node moved."""
        began = time.time()
        signalled = self._signalled.pop(cmd_id, began)
        link = self.agents.links.get(node_id)
        taken: list[tuple[Any, ...]] = []
        if link is not None and link.epoch is not None:  # its hello applied
            claim = {"id": cmd_id, "me": self.me, "epoch": link.epoch}
            # Claimed while the events before it are read: sent only once both are done.
            taken = await self._claim_reading(claim)
            read = claimed = time.time()
            if taken and self.agents.links.get(node_id) is not link:
                link = None  # the node reconnected meanwhile: its hello re-drives it
            elif taken:
                body, timeout, _origin = taken[0]
                answer = await self._request(cmd_id, link, body, timeout)
                replied = time.time()
                await self._answer(cmd_id, answer)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "routed %s target: signalled %.6f began %.6f read %.6f claimed %.6f "
                        "replied %.6f answered %.6f",
                        cmd_id,
                        signalled,
                        began,
                        read,
                        claimed,
                        replied,
                        time.time(),
                    )
                return
        moved = GdosError(
            ErrorCode.NODE_OFFLINE,
            f"node {node_id} moved or reconnected before the command reached it through "
            f"master {self.me}; nothing was sent to the node: try again",
            {"node_id": node_id},
        )
        answer = msgspec.json.encode({"error": moved.to_wire()}).decode()
        # Only one still queued for this master, or the one it claimed just now.
        await self._answer(cmd_id, answer, "running" if taken else "queued")

    async def _claim_reading(self, claim: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The claim's rows, once the events of the signals received so far are read too."""
        if self.events is None:
            return await self.bus.fetch(CLAIM, claim)
        claiming = asyncio.ensure_future(self.bus.fetch(CLAIM, claim))
        try:
            await self.events.read_up()
        finally:
            taken = await claiming  # never left running: the row it takes must be answered
        return taken

    async def _request(self, cmd_id: str, link: AgentLink, body: str, timeout: float) -> str:
        try:
            result = await link.request(MASTER_MESSAGE.decode(body), float(timeout))
            return result.to_json()
        except GdosError as exc:
            return msgspec.json.encode({"error": exc.to_wire()}).decode()
        except Exception as exc:  # a bug here must still answer the origin
            log.exception("routed command %s failed", cmd_id)
            wire = WireError(code=ErrorCode.INTERNAL, message=f"routing failed: {exc}")
            return Result(reply_to=cmd_id, ok=False, error=wire).to_json()

    async def _answer(self, cmd_id: str, answer: str, state: str = "running") -> None:
        try:
            await self.bus.fetch(ANSWER, {"id": cmd_id, "answer": answer, "states": [state]})
        except Exception:
            log.warning("the answer to routed command %s was lost", cmd_id, exc_info=True)

    # -- after a lost bus connection, and at start ------------------------------------------

    def resync(self) -> None:
        """Signals may have been missed: take what is queued for this master, collect the
        answers this master waits for."""
        self._spawn(self.take_missed())

    async def take_missed(self) -> None:
        try:
            queued = await self.bus.fetch(QUEUED, {"me": self.me})
            for cmd_id, node_id in queued:
                self._spawn(self._run(cmd_id, node_id))
            for cmd_id in list(self._waiting):
                await self._collect(cmd_id)
        except Exception:  # the database away: the bus reconnects and calls this again
            log.warning("reading missed routed commands failed", exc_info=True)

    def prune(self) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(TABLE).where(TABLE.c.created_at < _NOW - KEEP))
