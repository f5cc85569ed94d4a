"""A node's life as consoles see it: its changes published, its load throttled, going offline."""

import contextlib
import time

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.agents import AgentLink, AgentRegistry
from master.services.orchestrator import Orchestrator
from master.services.serializers import node_out
from protocol.messages import CLOSE_POLICY

NODE_LOAD_EVERY = (
    5.0  # seconds between broadcast `node` load events per node (charts: metrics:<id>)
)


class Nodes:
    def __init__(
        self, db: Database, hub: Hub, agents: AgentRegistry, orchestrator: Orchestrator
    ) -> None:
        self.db = db
        self.hub = hub
        self.agents = agents
        self.orchestrator = orchestrator
        self._load_published: dict[str, float] = {}

    def publish(self, node_id: str, planned: bool = False) -> None:
        """`planned`: the node went offline on purpose (its agent said goodbye, or this master is
        stopping), which the alert engine does not count as a node lost."""
        with self.db.session() as s:
            node = s.get(models.Node, node_id)
            if node is not None:
                data = node_out(node, self.agents).model_dump()
                if planned:
                    data["planned"] = True
                self.hub.publish("node", data)

    def publish_load(self, link: AgentLink) -> None:
        now = time.monotonic()
        if now - self._load_published.get(link.node_id, 0.0) < NODE_LOAD_EVERY:
            return  # a table refresh every few seconds; charts subscribe to metrics:<node id>
        self._load_published[link.node_id] = now
        self.hub.publish(
            "node", {"id": link.node_id, "status": "online", "load": link.load.to_dict()}
        )

    def offline(self, link: AgentLink, planned: bool = False) -> None:
        """The node's socket is gone: remember when it was last seen, its processes are unknown."""
        with self.db.session() as s:
            node = s.get(models.Node, link.node_id)
            if node is not None:
                node.last_seen = link.last_seen_wall
                s.commit()
        self.orchestrator.mark_node_unknown(link.node_id)
        self.publish(link.node_id, planned)

    async def drop_stale(self, link: AgentLink) -> None:
        """An agent silent past the grace: offline, and its socket closed."""
        if self.agents.detach(link):
            self.offline(link)
        with contextlib.suppress(Exception):
            await link.channel.close(CLOSE_POLICY, "heartbeat timeout")
