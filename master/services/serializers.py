"""Database rows to REST bodies; the same shapes go out on the event stream."""

from master.db import models
from master.services.agents import AgentRegistry
from protocol.rest import (
    InstanceOut,
    LoadOut,
    ModuleOut,
    NodeOut,
    PackageOut,
    SystemOut,
    UserOut,
    iso,
)


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


def node_out(node: models.Node, agents: AgentRegistry) -> NodeOut:
    link = agents.get(node.id)
    load = LoadOut(**link.load.to_dict()) if link else LoadOut()
    last_seen = node.last_seen
    if link is not None:
        last_seen = max(last_seen or 0.0, link.last_seen_wall)
    return NodeOut(
        id=node.id,
        hostname=node.hostname,
        ip=node.ip,
        os=node.os,
        arch=node.arch,
        mac=node.mac,
        cpu_count=node.cpu_count,
        mem_total=node.mem_total,
        disk_total=node.disk_total,
        status="online" if link else "offline",
        last_seen=iso(last_seen),
        agent_version=node.agent_version,
        labels={str(k): str(v) for k, v in (node.labels or {}).items()},
        load=load,
        enrolled_at=iso(node.enrolled_at),
        unmanaged_instances=list(link.unmanaged) if link else [],
    )


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
