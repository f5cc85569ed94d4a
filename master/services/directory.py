"""Who runs where, in memory: instance -> (node, system, name, state) and node -> hostname.

Hot paths (metrics ingest, alert evaluation, the Prometheus page) ask this instead of the
database. It is loaded once at start and then follows the hub's `instance` and `node` events,
which every change already publishes (a reconnecting agent's hello republishes its instances).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from sys import intern
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.hub import Hub

EMPTY: frozenset[str] = frozenset()


@dataclass(slots=True)
class InstanceInfo:
    id: str
    node_id: str
    system_id: str
    name: str
    state: str


class Directory:
    def __init__(self, hub: Hub) -> None:
        self.instances: dict[str, InstanceInfo] = {}
        self.by_node: dict[str, set[str]] = {}
        self.hostnames: dict[str, str] = {}
        hub.listen("instance", self.on_instance)
        hub.listen("node", self.on_node)

    def load(self, s: Session) -> None:
        # Table columns, not ORM attributes: plain rows, without the ORM's loading per row.
        inst, node = models.Instance.__table__.c, models.Node.__table__.c
        rows = s.execute(select(inst.id, inst.node_id, inst.system_id, inst.name, inst.state))
        for iid, node_id, system_id, name, state in rows:
            self._put(InstanceInfo(iid, node_id, system_id, name, state))
        for node_id, hostname in s.execute(select(node.id, node.hostname).where(~node.revoked)):
            self.hostnames[node_id] = hostname

    def learn(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Instance rows as the database has them (a node's hello on a master that may not
        have seen them made)."""
        for row in rows:
            self._put(
                InstanceInfo(row["id"], row["node_id"], row["system_id"], row["name"], row["state"])
            )

    def reload(self, s: Session) -> None:
        """Start over from the database (after a backup restore swapped it)."""
        self.instances.clear()
        self.by_node.clear()
        self.hostnames.clear()
        self.load(s)

    def _put(self, info: InstanceInfo) -> None:
        # One string per node, system and state, not one per instance: a fleet's events and
        # rows bring each in a copy of its own.
        info.node_id, info.system_id = intern(info.node_id), intern(info.system_id)
        info.state = intern(str(info.state))  # a hello's changes bring `InstanceState` members
        old = self.instances.get(info.id)
        if old is not None and old.node_id != info.node_id:
            self.by_node.get(old.node_id, set()).discard(info.id)
        self.instances[info.id] = info
        self.by_node.setdefault(info.node_id, set()).add(info.id)

    def remove_instance(self, instance_id: str) -> InstanceInfo | None:
        info = self.instances.pop(instance_id, None)
        if info is not None:
            self.by_node.get(info.node_id, set()).discard(instance_id)
        return info

    def on_instance(self, data: dict[str, Any]) -> None:
        iid = data.get("id")
        if not isinstance(iid, str):
            return
        if data.get("deleted"):
            self.remove_instance(iid)
            return
        self._put(
            InstanceInfo(
                iid,
                str(data.get("node_id", "")),
                str(data.get("system_id", "")),
                str(data.get("name", "")),
                str(data.get("state", "")),
            )
        )

    def on_node(self, data: dict[str, Any]) -> None:
        node_id = data.get("id")
        if not isinstance(node_id, str):
            return
        if data.get("deleted"):
            self.hostnames.pop(node_id, None)
        elif "hostname" in data:
            self.hostnames[node_id] = str(data["hostname"])

    def owned_by(self, node_id: str) -> set[str] | frozenset[str]:
        return self.by_node.get(node_id, EMPTY)
