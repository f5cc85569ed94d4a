"""Connected agents: one socket per node, request/reply over it, liveness.

The only place that knows which agent socket this master holds; with several masters,
`require` gives a link through the master holding the node (master/services/remote_commands.py).
"""

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from protocol.errors import ErrorCode, GdosError
from protocol.messages import Load, Result
from protocol.wire import Struct

log = logging.getLogger(__name__)
_BOOT = secrets.token_hex(3)  # this process: a restarted master never reuses an id
_ids = itertools.count(1)


def command_id(master_id: str | None) -> str:
    """A command id unique across masters and their restarts (agents run each id once)."""
    return f"{master_id or 'm'}.{_BOOT}.{next(_ids)}"


class Channel(Protocol):
    async def send_text(self, data: str) -> None: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class AgentLink:
    """The master's end of one agent's WebSocket."""

    def __init__(self, node_id: str, channel: Channel) -> None:
        self.node_id = node_id
        self.channel = channel
        self.pending: dict[str, asyncio.Future[Result]] = {}
        self.connected_at = time.time()
        self.last_seen = time.monotonic()
        self.last_seen_wall = time.time()
        self.load = Load()
        self.closed = False
        self.unmanaged: list[str] = []  # instance ids the agent runs that the master does not know
        self.peer = ""  # the agent's address as the master sees it
        self.leaving = False  # the agent said goodbye: its disconnection is planned
        self.epoch: int | None = None  # the node's ownership epoch its last hello got
        # Attached, its hello not applied yet: that hello re-drives the desired state it reads,
        # so a command decided meanwhile would reach the agent twice (the socket sets it).
        self._greeting = False
        self.greeted_at = 0.0  # wall clock when its hello was applied (0: never greeted)
        self.master_id: str | None = None  # the master holding this link (set by `attach`)
        self._send_lock = asyncio.Lock()

    @property
    def greeting(self) -> bool:
        return self._greeting

    @greeting.setter
    def greeting(self, value: bool) -> None:
        if self._greeting and not value:
            self.greeted_at = time.time()
        self._greeting = value

    def greeted_since(self, decided_at: float) -> bool:
        """Whether this link's hello is not applied yet, or was applied after `decided_at`:
        either way that hello read (or will read) a desired state written before it, and
        re-drives it itself."""
        return self._greeting or self.greeted_at > decided_at

    async def send(self, msg: Struct) -> None:
        text = msg.to_json()
        async with self._send_lock:
            await self.channel.send_text(text)

    def touch(self) -> None:
        self.last_seen = time.monotonic()
        self.last_seen_wall = time.time()

    def next_id(self) -> str:
        return command_id(self.master_id)

    async def request(self, msg: Struct, timeout: float) -> Result:
        """Send a command carrying `id` and wait for the agent's `result`."""
        msg_id: str = getattr(msg, "id")  # noqa: B009 - every command model has an id
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        try:
            await self.send(msg)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise GdosError(
                ErrorCode.TIMEOUT, f"node {self.node_id} did not answer within {timeout:.0f} s"
            ) from None
        finally:
            self.pending.pop(msg_id, None)

    def resolve(self, result: Result) -> None:
        fut = self.pending.get(result.reply_to)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def fail_pending(self) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(
                    GdosError(ErrorCode.NODE_OFFLINE, f"node {self.node_id} disconnected")
                )
        self.pending.clear()


class AgentRegistry:
    def __init__(self) -> None:
        self.links: dict[str, AgentLink] = {}
        self.messages_in = 0
        self.master_id: str | None = None  # this master's id in the masters table
        self.peers: frozenset[str] = frozenset()  # the other masters online (several masters)
        # A link through the online master holding a node this one does not (several masters).
        self.remote: Callable[[str], AgentLink | None] | None = None

    def holder(self, node_id: str, master_id: str | None) -> str | None:
        """The master holding the node: this one when it has the link, else the one the node's
        row names if that master is online, else None (the node is offline)."""
        if node_id in self.links:
            return self.master_id or ""
        return master_id if master_id in self.peers else None

    def get(self, node_id: str) -> AgentLink | None:
        return self.links.get(node_id)

    def reach(self, node_id: str) -> AgentLink | None:
        """The node's link: this master's own, or one through the online master holding it;
        None when the node is offline."""
        link = self.links.get(node_id)
        if link is None and self.remote is not None and self.peers:
            link = self.remote(node_id)
        return link

    def require(self, node_id: str) -> AgentLink:
        """`reach`, or the API's `node_offline` error."""
        link = self.reach(node_id)
        if link is None:
            raise GdosError(
                ErrorCode.NODE_OFFLINE,
                f"node {node_id} is offline; try again when its agent is connected",
                {"node_id": node_id},
            )
        return link

    def is_online(self, node_id: str) -> bool:
        return node_id in self.links

    def attach(self, link: AgentLink) -> AgentLink | None:
        """Register a link; returns the previous one for the same node (to be closed)."""
        old = self.links.get(link.node_id)
        link.master_id = self.master_id
        self.links[link.node_id] = link
        return old

    def detach(self, link: AgentLink) -> bool:
        """Forget a link if it is still the current one for its node."""
        link.closed = True
        link.fail_pending()
        if self.links.get(link.node_id) is link:
            del self.links[link.node_id]
            return True
        return False

    def excuse(self, seconds: float) -> None:
        for link in self.links.values():
            link.last_seen += seconds

    def stale(self, grace: float) -> list[AgentLink]:
        limit = time.monotonic() - grace
        return [link for link in self.links.values() if link.last_seen < limit]


async def watch_liveness(
    registry: AgentRegistry, grace: float, on_stale: Callable[[AgentLink], Awaitable[Any]]
) -> None:
    """Close the sockets of agents silent for longer than `grace` seconds (partitions).

    When the master's own event loop was stalled (a long database write, a burst), the
    agents' messages sat unread in socket buffers: that silence is the master's, so every
    link gets the stalled time back instead of a mass "offline" that would make it worse."""
    period = min(0.5, grace / 4)
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        await asyncio.sleep(period)
        late = loop.time() - began - period
        if late > grace / 4:
            log.warning("master event loop stalled %.1f s: liveness grace extended", late)
            registry.excuse(late)
            continue
        for link in registry.stale(grace):
            if link.closed or time.monotonic() - link.last_seen < grace:
                continue  # gone, or heard from, while an earlier one was dropped
            log.warning("node %s silent for %.1f s: marking offline", link.node_id, grace)
            await on_stale(link)
            await asyncio.sleep(0)  # one node per turn: a fleet gone silent never holds the loop
