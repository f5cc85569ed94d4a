"""What the master does with each text frame an agent sends: decode, check, hand it on.

The socket loop (`master.api.agent`) owns the WebSocket; this owns the messages, synchronously,
so that a message costs no more than its decoding and its effect (and a benchmark can feed it
without a socket). Only a `hello` needs the event loop: it is returned for the caller to await.
"""

import json
import logging
from functools import partial
from typing import TYPE_CHECKING

from master.api import wsutil
from master.services.agents import AgentLink
from master.services.throttle import LogBudget
from protocol.messages import (
    AGENT_MESSAGE,
    DecodeError,
    Goodbye,
    Heartbeat,
    Hello,
    InstanceStateMsg,
    InstanceStates,
    Load,
    LogChunk,
    Metrics,
    Result,
    ValidationError,
)

if TYPE_CHECKING:
    from master.services.wiring import Services

log = logging.getLogger(__name__)
MAX_FRAME = 4 << 20
_noisy = LogBudget()  # lines a misbehaving node can cause in the master's log


class Unreadable(Exception):
    """A frame that ends the connection: `code` and `reason` for the close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Inbox:
    """One agent socket's incoming messages."""

    __slots__ = ("link", "svc")

    def __init__(self, link: AgentLink, svc: "Services") -> None:
        self.link = link
        self.svc = svc

    def receive(self, text: str) -> Hello | None:
        """Handle one text frame. Returns a repeated `hello` for the caller to reconcile;
        raises `Unreadable` for a frame that must close the socket (too large, not JSON).
        JSON this master does not understand (a newer agent's message) is logged and skipped."""
        self.link.touch()
        self.svc.agents.messages_in += 1
        if len(text) > MAX_FRAME:
            raise Unreadable(1009, "frame too large")
        try:
            msg = AGENT_MESSAGE.decode(text)
        except ValidationError as exc:
            held = _noisy.allow(f"invalid:{self.link.node_id}")
            if held is not None:
                log.warning(
                    "node %s sent an invalid message: %s%s",
                    self.link.node_id,
                    _summary(text, exc),
                    f" ({held} more since, not logged)" if held else "",
                )
            return None
        except DecodeError:
            raise Unreadable(wsutil.CLOSE_INVALID_PAYLOAD, "frames must be JSON") from None
        if isinstance(msg, Hello):
            return msg
        self._apply(msg)
        return None

    def take(self, text: str) -> bool:
        """`receive` for a frame that needs nothing awaited, called where it is parsed (the
        socket's sink, master/ws_direct.py). False, with nothing done, for one that does
        or that is not plainly valid (a hello, an error): `receive` then has it."""
        if len(text) > MAX_FRAME:
            return False
        try:
            msg = AGENT_MESSAGE.decode(text)
        except (ValidationError, DecodeError):
            return False
        if isinstance(msg, Hello):
            return False
        self.link.touch()
        self.svc.agents.messages_in += 1
        self._apply(msg)
        return True

    def _apply(self, msg: object) -> None:
        link, svc = self.link, self.svc
        if type(msg) is Metrics:  # the fleet's steady stream: first, and nothing else to do
            svc.metrics.ingest(link.node_id, msg)
            if msg.node is not None:  # agents skip heartbeats while metrics carry the load
                cpu, mem, disk, _, _, load1 = msg.node
                link.load = Load(cpu_percent=cpu, mem_percent=mem, disk_percent=disk, load1=load1)
                svc.nodes.publish_load(link)
        elif isinstance(msg, Heartbeat):
            link.load = msg.load
            svc.nodes.publish_load(link)
        elif isinstance(msg, InstanceStateMsg):
            svc.orchestrator.reports.queue(link.node_id, [msg], link.epoch)
        elif isinstance(msg, InstanceStates):
            svc.orchestrator.reports.queue(link.node_id, msg.reports, link.epoch)
        elif isinstance(msg, Result):
            svc.orchestrator.reports.after(partial(link.resolve, msg))
        elif isinstance(msg, LogChunk):
            svc.logs.on_chunk(link.node_id, msg)
        elif isinstance(msg, Goodbye):
            link.leaving = True
            log.info("node %s is leaving: %s", link.node_id, msg.reason or "no reason given")


def _summary(text: str, exc: ValidationError) -> str:
    try:
        kind = json.loads(text).get("type", "?")
    except (ValueError, AttributeError):
        kind = "?"
    return f"type={kind}: {exc}"
