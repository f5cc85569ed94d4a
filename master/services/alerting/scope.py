"""Which targets a rule covers and what a target is called, looked up in the instance
directory (no I/O)."""

from dataclasses import dataclass

from master.services.alerting.rules import Rule
from master.services.directory import Directory, InstanceInfo


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # node | instance
    node_id: str | None
    system_id: str | None
    name: str


def applies_instance(rule: Rule, info: InstanceInfo) -> bool:
    kind = rule.scope_kind
    if kind == "global":
        return True
    if kind == "system":
        return info.system_id == rule.scope_id
    if kind == "node":
        return info.node_id == rule.scope_id
    return info.id == rule.scope_id


def applies_node(rule: Rule, node_id: str, directory: Directory) -> bool:
    kind, sid = rule.scope_kind, rule.scope_id
    if kind == "global":
        return True
    if kind == "node":
        return sid == node_id
    if kind == "instance":
        info = directory.instances.get(sid or "")
        return info is not None and info.node_id == node_id
    instances = directory.instances
    return any(
        (i := instances.get(iid)) is not None and i.system_id == sid
        for iid in directory.owned_by(node_id)
    )


def covers(rule: Rule, target_id: str, directory: Directory) -> bool:
    if rule.on_nodes:
        return applies_node(rule, target_id, directory)
    info = directory.instances.get(target_id)
    return info is not None and applies_instance(rule, info)


def target_of(rule: Rule, target_id: str, directory: Directory) -> Target:
    if rule.on_nodes:
        return Target("node", target_id, None, directory.hostnames.get(target_id, ""))
    info = directory.instances.get(target_id)
    if info is None:
        return Target("instance", None, None, "")
    return Target("instance", info.node_id, info.system_id, info.name)
