"""Database rows to REST bodies; the same shapes go out on the event stream."""

from collections.abc import Mapping
from typing import Any

from master.db import models
from master.services.agents import AgentRegistry
from protocol.messages import Load
from protocol.rest import (
    InstanceOut,
    ModuleOut,
    NodeOut,
    PackageOut,
    SystemOut,
    UserOut,
    iso,
)

_NO_LOAD = Load()


def instance_out(inst: models.Instance) -> InstanceOut:
    return InstanceOut(
        id=inst.id,
        system_id=inst.system_id,
        module_id=inst.module_id,
        node_id=inst.node_id,
        name=inst.name,
        state=inst.state,
        desired_state=inst.desired_state,
        health=inst.health,
        pid=inst.pid,
        started_at=iso(inst.started_at),
        restarts=inst.restarts,
        exit_code=inst.exit_code,
        last_error=inst.last_error,
        adopted=inst.adopted,
        version=inst.version,
        health_detail=inst.health_detail,
        user=inst.user,
        previous_version=inst.previous_version,
        drift=bool(inst.drift),
        index=inst.module_index,
        settings={
            "env": dict(inst.override_env or {}),
            "args": inst.override_args,
            "user": inst.override_user,
        },
    )


# The node columns a NodeOut is made of (the listing reads only these, through Core).
NODE_COLUMNS = (
    "id",
    "hostname",
    "ip",
    "os",
    "arch",
    "mac",
    "cpu_count",
    "mem_total",
    "disk_total",
    "agent_version",
    "labels",
    "enrolled_at",
    "last_seen",
    "master_id",
)


def node_view(node: Mapping[str, Any], agents: AgentRegistry) -> dict[str, Any]:
    """NodeOut as plain data from a node's columns: what the listing and the `node` event
    send, without a model per node (a fleet's listing is a thousand of them)."""
    link = agents.get(node["id"])
    holder = agents.holder(node["id"], node["master_id"])
    last_seen = node["last_seen"]
    if link is not None:
        last_seen = max(last_seen or 0.0, link.last_seen_wall)
    load = link.load if link is not None else _NO_LOAD
    return {
        "id": node["id"],
        "hostname": node["hostname"],
        "ip": node["ip"],
        "os": node["os"],
        "arch": node["arch"],
        "mac": node["mac"],
        "cpu_count": node["cpu_count"],
        "mem_total": node["mem_total"],
        "disk_total": node["disk_total"],
        "status": "offline" if holder is None else "online",
        "last_seen": iso(last_seen),
        "agent_version": node["agent_version"],
        "labels": {str(k): str(v) for k, v in (node["labels"] or {}).items()},
        "load": {
            "cpu_percent": float(load.cpu_percent),
            "mem_percent": float(load.mem_percent),
            "disk_percent": float(load.disk_percent),
            "load1": float(load.load1),
        },
        "enrolled_at": iso(node["enrolled_at"]),
        "unmanaged_instances": list(link.unmanaged) if link else [],
        "master_id": holder or None,
    }


def node_out(node: models.Node, agents: AgentRegistry) -> NodeOut:
    return NodeOut.model_validate(node_view({c: getattr(node, c) for c in NODE_COLUMNS}, agents))


def package_out(pkg: models.Package) -> PackageOut:
    return PackageOut(
        id=pkg.id,
        name=pkg.name,
        version=pkg.version,
        description=pkg.description,
        os=pkg.os,
        sha256=pkg.sha256,
        size=pkg.size,
        uploaded_at=iso(pkg.uploaded_at) or "",
        manifest=pkg.manifest,
    )


def module_out(mod: models.Module) -> ModuleOut:
    return ModuleOut(
        id=mod.id,
        system_id=mod.system_id,
        name=mod.name,
        package=mod.package_name,
        version=mod.version,
        start_order=mod.start_order,
        env={str(k): str(v) for k, v in (mod.env or {}).items()},
        args=mod.args,
    )


def system_out(sys: models.System) -> SystemOut:
    return SystemOut(
        id=sys.id, name=sys.name, description=sys.description, created_at=iso(sys.created_at)
    )


def user_out(user: models.User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        created_at=iso(user.created_at),
    )
