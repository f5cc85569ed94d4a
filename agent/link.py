"""The agent's one connection to the master: dial out, say hello, heartbeat, obey, reconnect.

Reconnects back off exponentially with full jitter (so a thousand agents do not return in
lockstep after a master restart) and reset once a connection has lived a while. With several
master URLs each attempt goes to the next one (the first URL, then the others in an order of
the node's own), the backoff doubling once per round of the list (a lost master's agents reach
a survivor without waiting out the failures of a dead or hung one), and a quick keepalive
notices a hung master (stopped, or a link dead without a FIN) within `FAILOVER_PING` seconds;
after a link that lived `HUNG_AFTER` the other masters are then dialled at once, one round
of the list (the ping's phase already spreads those dials; a dead master among them refuses
at once and costs no backoff).
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.credential import Credential
from agent.executor.supervisor import Supervisor
from agent.hostinfo import current_load, host_info
from agent.logs import AgentLogs
from agent.recent import RecentCommands
from agent.wsclient import (
    KEEPALIVE_LOST,
    ClientConnection,
    ConnectionClosed,
    InvalidStatus,
    WebSocketError,
    connect,
)
from protocol import __version__
from protocol.errors import ErrorCode, GdosError
from protocol.messages import (
    MASTER_MESSAGE,
    Adopt,
    Batch,
    Config,
    DecodeError,
    Deploy,
    Destroy,
    FollowLog,
    Goodbye,
    Heartbeat,
    Hello,
    InstanceReport,
    InstanceStateMsg,
    InstanceStates,
    ListLogs,
    Load,
    Prepare,
    Result,
    Start,
    Stop,
    Switch,
    TailLog,
    WireError,
)
from protocol.wire import Struct

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

BACKOFF_MIN, BACKOFF_MAX, STABLE_AFTER = 0.5, 30.0, 30.0
# A link that lived this long before its pongs stopped had a healthy master (some 20 pings
# answered): it hung, so the others are dialled at once. A link an overloaded master keeps
# dropping lives its pong deadline and greeting (4-5 s) and backs off. Shorter than
# STABLE_AFTER: a master that takes a killed one's nodes and hangs 15 s later is left as fast.
HUNG_AFTER = 10.0
# Keepalive (ping interval, pong deadline), s: with one master a slow one is simply waited
# for; with several, one that stops answering is left for the next within interval + deadline.
# Frequent pings with a long deadline: a master whose loop lags 3 s under a storm of hellos
# is kept, a hung one is left as soon.
SINGLE_PING = (20.0, 20.0)
FAILOVER_PING = (0.5, 3.5)


def ws_url(master: str) -> str:
    base = master.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/api/v1/agent/ws"


def failover_order(urls: tuple[str, ...], node_id: str) -> tuple[str, ...]:
    """The first URL, then the others shuffled by the node's id (the same order at every start):
    the nodes of a lost master spread over the other masters, not all onto the next one."""
    rest = list(urls[1:])
    random.Random(node_id).shuffle(rest)
    return (*urls[:1], *rest)


def hung_master(exc: BaseException) -> bool:
    """Whether a link ended because its master stopped answering pings (rather than closing
    or refusing): the next master is then dialled with no backoff."""
    return isinstance(exc, ConnectionClosed) and exc.reason == KEEPALIVE_LOST


def backoff_delays(per_round: int = 1) -> Any:
    """Full-jitter delays before each attempt, doubling every `per_round` attempts (the
    number of master URLs: each is tried once per round before the waits grow)."""
    attempt = 0
    while True:
        cap = BACKOFF_MIN * 2 ** (attempt // max(1, per_round))
        yield random.uniform(0, min(BACKOFF_MAX, cap))
        attempt += 1


class Redials:
    """The wait before each dial of a link with `urls` master URLs: the backoff's (reset by a
    link that lived `STABLE_AFTER`), except after a hung master's link that lived `HUNG_AFTER`,
    when the rest of the list is dialled at once, one round (a refused dial to a dead master on
    the way costs nothing; any failure after the round backs off, so a fleet bouncing between
    overloaded masters slows down)."""

    def __init__(self, urls: int) -> None:
        self.urls = urls
        self._delays = backoff_delays(urls)
        self._free = 0  # dials left in the round that needs no wait

    def after(self, lived: float, hung: bool) -> float:
        """Seconds to wait before the next dial, given how long the last link lived and
        whether its master stopped answering pings."""
        if lived > STABLE_AFTER:
            self._delays = backoff_delays(self.urls)
        if lived > HUNG_AFTER:  # a round left unfinished by a link that lived ends with it
            self._free = self.urls - 1 if hung else 0  # each other master once; not the hung one
        if self._free > 0:
            self._free -= 1
            return 0.0
        return float(next(self._delays))


class Link:
    def __init__(
        self,
        cred: Credential,
        supervisor: Supervisor,
        work_dir: Path,
        ssl_context: "ssl.SSLContext | None" = None,
    ) -> None:
        self.cred = cred
        self.urls = failover_order(cred.urls, cred.node_id)
        self._at = 0  # index in `urls` of the master this link dials
        self.supervisor = supervisor
        self.work_dir = work_dir
        self.ssl_context = ssl_context
        self.ws: ClientConnection | None = None
        self.heartbeat_interval = 1.0
        self.connected = asyncio.Event()
        self.on_config: Callable[[Config], None] | None = None
        # Where heartbeats take the node's load from (the monitor's latest sample), if anywhere.
        self.load_source: Callable[[], Load | None] | None = None
        self.metrics_sent_at = 0.0  # monotonic
        self._tasks: set[asyncio.Task[Any]] = set()
        self.logs = AgentLogs(supervisor, self._send)
        self._outbox: dict[str, InstanceReport] = {}
        self.recent = RecentCommands()

    @property
    def master(self) -> str:
        """The URL of the master this link is connected to (or dials next)."""
        return self.urls[self._at]

    # -- outgoing -----------------------------------------------------------------------------

    def report(self, report: InstanceReport) -> None:
        """Send an instance's state if connected; otherwise `hello` will carry it later.

        Reports made in the same turn of the loop (a batch of starts) go up as one message,
        the newest state per instance, so the master writes them in one transaction."""
        if self.ws is None:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_reports)
        self._outbox[report.instance_id] = report

    def _flush_reports(self) -> None:
        reports, self._outbox = list(self._outbox.values()), {}
        if len(reports) == 1:
            self._spawn(self._send(InstanceStateMsg.of(reports[0])))
        elif reports:
            self._spawn(self._send(InstanceStates(reports=reports)))

    async def send_metrics(self, text: str) -> None:
        """Send an encoded `metrics` message if connected (dropped while offline: live data)."""
        ws = self.ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)
            self.metrics_sent_at = time.monotonic()

    async def _send(self, msg: Struct) -> None:
        ws = self.ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(msg.to_json())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the connection loop ---------------------------------------------------------------------

    async def run_forever(self) -> None:
        redials = Redials(len(self.urls))
        while True:
            began = time.monotonic()
            at_once = False
            try:
                await self._session()
            except InvalidStatus as exc:
                status = exc.status
                if status in (401, 403):
                    log.error(
                        "the master refused this node's credential (HTTP %d): the node was "
                        "removed or revoked. Delete %s and enrol again with --token.",
                        status,
                        self.work_dir / "agent-credential.json",
                    )
                else:
                    log.warning("master answered HTTP %d; retrying", status)
            except (OSError, WebSocketError, TimeoutError) as exc:
                at_once = hung_master(exc)
                log.warning(
                    "connection to %s lost or refused: %s",
                    self.master,
                    exc or type(exc).__name__,
                )
            except Exception:  # a bug must cost one connection, never the node's link for good
                log.exception("connection to %s failed unexpectedly", self.master)
            finally:
                self.ws = None
                self.connected.clear()
            # A master that held the link a while, then stopped answering pings, is hung: the
            # others are dialled at once. Links that keep failing back off as ever.
            delay = redials.after(time.monotonic() - began, at_once)
            self._at = (self._at + 1) % len(self.urls)
            log.info("reconnecting to %s in %.1f s", self.master, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        headers = {"Authorization": f"Bearer {self.cred.node_secret}"}
        ping_interval, ping_timeout = FAILOVER_PING if len(self.urls) > 1 else SINGLE_PING
        master = self.master
        ws = await connect(
            ws_url(master),
            headers=headers,
            ssl=self.ssl_context,
            open_timeout=10 if len(self.urls) == 1 else 5,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_size=8 << 20,
            probe_liveness=len(self.urls) > 1,
        )
        async with ws:
            hello = Hello(
                agent_version=__version__,
                host=await asyncio.to_thread(host_info, master, self.work_dir),
                instances=self.supervisor.reports(),
            )
            await ws.send(hello.to_json())
            self.ws = ws
            self.connected.set()
            log.info("connected to %s as node %s", master, self.cred.node_id)
            heart = asyncio.create_task(self._heartbeats(ws))
            try:
                async for raw in ws:
                    self._dispatch(raw)
            finally:
                heart.cancel()
                self.logs.stop_all()

    async def _heartbeats(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                # Any message proves liveness: while metrics (which carry the node's load) go
                # out every interval, a heartbeat would only double the master's work.
                if time.monotonic() - self.metrics_sent_at >= self.heartbeat_interval * 0.9:
                    load = self.load_source() if self.load_source else None
                    if load is None:
                        load = await asyncio.to_thread(current_load, self.work_dir)
                    await ws.send(Heartbeat(ts=time.time(), load=load).to_json())
                await asyncio.sleep(self.heartbeat_interval)

    # -- incoming -------------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            msg = MASTER_MESSAGE.decode(raw)
        except DecodeError as exc:
            log.warning("ignoring an invalid message from the master: %s", exc)
            return
        if isinstance(msg, Config):
            self.heartbeat_interval = msg.heartbeat_interval
            if self.on_config:
                self.on_config(msg)
            return
        if not isinstance(msg, ListLogs | TailLog | FollowLog):  # reads may run twice
            fresh, earlier = self.recent.begin(msg.id)
            if not fresh:
                log.info("%s %s was received before: not run again", msg.type, msg.id)
                if earlier is not None:
                    self._spawn(self._send(earlier))
                return
        self._spawn(self._execute(msg))

    async def _execute(
        self,
        msg: Deploy
        | Start
        | Stop
        | Destroy
        | Batch
        | Prepare
        | Switch
        | Adopt
        | ListLogs
        | TailLog
        | FollowLog,
    ) -> None:
        sup = self.supervisor
        data: dict[str, Any] = {}
        try:
            ok = True
            if isinstance(msg, ListLogs | TailLog | FollowLog):
                data = await self.logs.handle(msg)
            elif isinstance(msg, Deploy):
                await sup.deploy(msg.spec)
            elif isinstance(msg, Start):
                await sup.start(msg.instance_id, msg.settings)
            elif isinstance(msg, Stop):
                await sup.stop(msg.instance_id)
            elif isinstance(msg, Destroy):
                await sup.destroy(msg.instance_id)
            elif isinstance(msg, Batch):
                data["results"] = await self._batch(msg)
                ok = not any(data["results"].values())
            elif isinstance(msg, Prepare):
                data["release"], data["fetched"] = await sup.prepare(msg.instance_id, msg.package)
                data["report"] = sup.get(msg.instance_id).report().to_dict()
            elif isinstance(msg, Switch):
                data["previous"] = await sup.switch(
                    msg.instance_id, msg.package, msg.start, msg.settings
                )
                m = sup.get(msg.instance_id)
                data["release"], data["report"] = m.release, m.report().to_dict()
            elif isinstance(msg, Adopt):
                data["report"] = (await sup.adopt(msg.spec)).to_dict()
            result = Result(reply_to=msg.id, ok=ok, data=data)
        except GdosError as exc:
            error = WireError(**exc.to_wire())
            result = Result(reply_to=msg.id, ok=False, error=error, data=self._where(msg))
        except Exception as exc:  # an agent bug must still answer, not leave the master waiting
            log.exception("%s failed", msg.type)
            wire = WireError(
                code=ErrorCode.INTERNAL, message=f"{msg.type} failed on the agent: {exc}"
            )
            result = Result(reply_to=msg.id, ok=False, error=wire)
        self.recent.done(msg.id, result)
        await self._send(result)

    def _where(self, msg: Any) -> dict[str, Any]:
        """A failed prepare or switch still says where the instance stands (a switch may have
        happened and only its start failed)."""
        if not isinstance(msg, Prepare | Switch):
            return {}
        m = self.supervisor.instances.get(msg.instance_id)
        return {} if m is None else {"release": m.release, "report": m.report().to_dict()}

    async def _batch(self, msg: Batch) -> dict[str, dict[str, Any] | None]:
        """Every instance at once; each answers for itself (null = done, else its error)."""
        sup = self.supervisor

        async def one(instance_id: str) -> dict[str, Any] | None:
            try:
                if msg.action == "start":
                    await sup.start(instance_id, msg.settings.get(instance_id))
                else:
                    await sup.stop(instance_id)
            except GdosError as exc:
                return exc.to_wire()
            except Exception as exc:  # an agent bug answers for this instance only
                log.exception("%s of %s failed", msg.action, instance_id)
                return GdosError(ErrorCode.INTERNAL, f"{msg.action} failed: {exc}").to_wire()
            return None

        outcomes = await asyncio.gather(*(one(i) for i in msg.instance_ids))
        return dict(zip(msg.instance_ids, outcomes, strict=True))

    async def goodbye(self, reason: str, timeout: float = 2.0) -> None:
        """Tell the master this node is leaving on purpose, then close the socket."""
        ws = self.ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            await asyncio.wait_for(ws.send(Goodbye(reason=reason).to_json()), timeout)
            await asyncio.wait_for(ws.close(), timeout)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
