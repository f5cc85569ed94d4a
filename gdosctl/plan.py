"""What `apply` must do to make a system match its file: a pure function of the file and the
master's state (no I/O), so each case is tested as data. The caller performs the actions with
the same API calls a person would make.

Instances are matched per module and node, in order; the file names what each should have of
its own (env, args) and which version runs (the module's, or the newest package). A module or
instance the file does not list is removed; adopted instances are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gdosctl.errors import USAGE, CtlError
from gdosctl.resolve import Named, pick
from gdosctl.spec import DesiredInstance, DesiredModule, DesiredSystem

Kind = Literal["created", "changed", "rolled_out", "removed"]
KINDS: tuple[Kind, ...] = ("created", "changed", "rolled_out", "removed")


@dataclass(frozen=True)
class Action:
    kind: Kind
    text: str  # what a person reads in the plan
    op: str  # what the applier does: create_system, update_system, create_module, ...
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    system: str
    actions: list[Action] = field(default_factory=list)

    def add(self, kind: Kind, text: str, op: str, **args: Any) -> None:
        self.actions.append(Action(kind, text, op, args))

    @property
    def empty(self) -> bool:
        return not self.actions

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"system": self.system}
        for kind in KINDS:
            out[kind] = [a.text for a in self.actions if a.kind == kind]
        return out

    def ordered(self) -> list[Action]:
        """The order that works: settings before the restarts a rollout makes, instances gone
        before their module, new instances last (they get the version rolled out)."""
        rank = {op: i for i, op in enumerate(ORDER)}
        return sorted(self.actions, key=lambda a: rank[a.op])


ORDER = (
    "create_system",
    "update_system",
    "create_module",
    "update_module",
    "update_instance",
    "destroy",
    "delete_module",
    "rollout",
    "deploy",
)


@dataclass(frozen=True)
class World:
    """The master's side: the system (None: absent) as `GET /systems/{id}` gives it, the nodes,
    the newest version of each package, and whether the master has the releases API."""

    system: dict[str, Any] | None
    nodes: Sequence[dict[str, Any]]
    newest: dict[str, str]
    releases: bool


def instance_order(inst: dict[str, Any]) -> tuple[int, int, str]:
    """Instances of a module on one node, in the order files list them (export writes so)."""
    name = str(inst.get("name", ""))
    number = name.rsplit("-", 1)[-1]
    return (int(inst.get("index") or 0), int(number) if number.isdigit() else 0, name)


def make(desired: DesiredSystem, world: World, rollout: bool = True) -> Plan:
    plan = Plan(desired.name)
    current = world.system
    if current is None:
        plan.add(
            "created",
            f"system {desired.name}",
            "create_system",
            name=desired.name,
            description=desired.description,
        )
    elif current.get("description", "") != desired.description:
        plan.add(
            "changed",
            f"system {desired.name}: description",
            "update_system",
            description=desired.description,
        )
    modules = {m["name"]: m for m in (current or {}).get("modules", [])}
    instances = [i for i in (current or {}).get("instances", []) if i.get("module_id")]
    node_ids = {
        m.name: [_node(world, i.node, m.name) for i in m.instances] for m in desired.modules
    }
    for mod in desired.modules:
        have = modules.get(mod.name)
        mine = [i for i in instances if have is not None and i["module_id"] == have["id"]]
        if have is None:
            plan.add(
                "created",
                f"module {mod.name} (package {mod.package} {mod.version or 'newest'}, start order {mod.start_order})",
                "create_module",
                module=mod,
            )
        else:
            _module_changes(plan, mod, have)
        _instances(plan, mod, mine, node_ids[mod.name], world)
        if have is not None:
            _version(plan, mod, have, mine, world, rollout)
    for name, have in modules.items():
        if name in node_ids:
            continue
        for inst in sorted(
            (i for i in instances if i["module_id"] == have["id"]), key=instance_order
        ):
            plan.add(
                "removed",
                f"instance {inst['name']} ({_hostname(world, inst['node_id'])})",
                "destroy",
                instance_id=inst["id"],
                name=inst["name"],
            )
        plan.add("removed", f"module {name}", "delete_module", module=name, module_id=have["id"])
    return plan


def _node(world: World, query: str, module: str) -> str:
    try:
        return pick("node", query, [Named(n["id"], n["hostname"]) for n in world.nodes]).id
    except CtlError as exc:
        raise CtlError(f"module {module}: {exc.message}", exc.code) from None


def _hostname(world: World, node_id: str) -> str:
    return next((n["hostname"] for n in world.nodes if n["id"] == node_id), node_id)


def _module_changes(plan: Plan, mod: DesiredModule, have: dict[str, Any]) -> None:
    changes: dict[str, Any] = {}
    said = []
    if have.get("start_order") != mod.start_order:
        changes["start_order"] = mod.start_order
        said.append(f"start order {have.get('start_order')} -> {mod.start_order}")
    if (have.get("env") or {}) != mod.env:
        changes["env"] = mod.env
        said.append(f"env {_env_diff(have.get('env') or {}, mod.env)}")
    if have.get("args") != mod.args:
        changes["args"] = mod.args
        said.append(f"args {have.get('args')} -> {mod.args}")
    if changes:
        plan.add(
            "changed",
            f"module {mod.name}: {'; '.join(said)}",
            "update_module",
            module=mod.name,
            changes=changes,
        )


def _env_diff(old: dict[str, str], new: dict[str, str]) -> str:
    parts = [f"+{k}" for k in new if k not in old]
    parts += [f"-{k}" for k in old if k not in new]
    parts += [f"{k} changed" for k in new if k in old and old[k] != new[k]]
    return ", ".join(parts)


def _instances(
    plan: Plan, mod: DesiredModule, mine: list[dict[str, Any]], node_ids: list[str], world: World
) -> None:
    wanted: dict[str, list[DesiredInstance]] = {}
    for entry, node_id in zip(mod.instances, node_ids, strict=True):
        wanted.setdefault(node_id, []).append(entry)
    placed: dict[str, list[dict[str, Any]]] = {}
    for inst in sorted(mine, key=instance_order):
        placed.setdefault(inst["node_id"], []).append(inst)
    for node_id in [*wanted, *(n for n in placed if n not in wanted)]:
        entries, existing = wanted.get(node_id, []), placed.get(node_id, [])
        for entry, inst in zip(entries, existing, strict=False):
            _settings(plan, entry, inst, world)
        for entry in entries[len(existing) :]:
            _needs_releases(entry, mod.name, world)
            plan.add(
                "created",
                f"instance of {mod.name} on {_hostname(world, node_id)}",
                "deploy",
                module=mod.name,
                node_id=node_id,
                env=entry.env,
                args=entry.args,
            )
        for inst in existing[len(entries) :]:
            plan.add(
                "removed",
                f"instance {inst['name']} ({_hostname(world, node_id)})",
                "destroy",
                instance_id=inst["id"],
                name=inst["name"],
            )


def _needs_releases(entry: DesiredInstance, module: str, world: World) -> None:
    if (entry.env or entry.args is not None) and not world.releases:
        raise CtlError(
            f"module {module}: per-instance env and args need a master with the releases API",
            USAGE,
        )


def _settings(plan: Plan, entry: DesiredInstance, inst: dict[str, Any], world: World) -> None:
    if not world.releases:
        _needs_releases(entry, str(inst.get("name")), world)
        return
    own = inst.get("settings") or {}
    changes: dict[str, Any] = {}
    if (own.get("env") or {}) != entry.env:
        changes["env"] = entry.env or None
    if own.get("args") != entry.args:
        changes["args"] = entry.args
    if changes:
        what = " and ".join(changes)
        plan.add(
            "changed",
            f"instance {inst['name']}: its own {what}",
            "update_instance",
            instance_id=inst["id"],
            name=inst["name"],
            changes=changes,
        )


def _version(
    plan: Plan,
    mod: DesiredModule,
    have: dict[str, Any],
    mine: list[dict[str, Any]],
    world: World,
    rollout: bool,
) -> None:
    target = mod.version or world.newest.get(mod.package)
    behind = sorted(i["name"] for i in mine if i.get("version") and i["version"] != target)
    if behind and rollout:
        if not world.releases:
            raise CtlError(
                f"module {mod.name}: rolling {', '.join(behind)} out to {target} needs a master "
                "with the releases API (--no-rollout only changes the module)",
                USAGE,
            )
        versions = sorted({str(i["version"]) for i in mine if i["name"] in behind})
        plan.add(
            "rolled_out",
            f"module {mod.name}: {', '.join(versions)} -> {target} ({len(behind)} instance(s), batch 1)",
            "rollout",
            module=mod.name,
            version=target,
            then_newest=mod.version is None,
        )
        return
    if have.get("version") != mod.version:
        text = f"module {mod.name}: version {have.get('version') or 'newest'} -> {mod.version or 'newest'}"
        if behind:
            text += f" (not rolled out: {', '.join(behind)} keep theirs)"
        plan.add(
            "changed", text, "update_module", module=mod.name, changes={"version": mod.version}
        )
