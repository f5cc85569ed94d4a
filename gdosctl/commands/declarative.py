"""apply and export: systems kept as YAML files (in git), made real with the same API calls a
person would make."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gdosctl import complete, lookup, output, plan, spec, wait
from gdosctl.errors import USAGE, CtlError
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client

RELEASES_ROUTE = "/api/v1/instances/{instance_id}/upgrade"
HEADINGS = {
    "created": "created",
    "changed": "changed",
    "rolled_out": "rolled out",
    "removed": "removed",
}


async def has_releases(client: Client) -> bool:
    """Whether this master has the releases API (upgrade, rollout, per-instance settings)."""
    resp = await client.request("GET", "/openapi.json", absolute=True)
    return RELEASES_ROUTE in (resp.json().get("paths") or {})


async def world_of(client: Client, name: str) -> plan.World:
    systems, nodes, packages, releases = await asyncio.gather(
        client.systems(), client.nodes(), client.packages(), has_releases(client)
    )
    newest: dict[str, str] = {}
    for pkg in packages:  # newest upload first within a name
        newest.setdefault(pkg.name, pkg.version)
    found = next((s for s in systems if s.name == name), None)
    detail = (await client.system(found.id)).model_dump() if found else None
    if detail is not None and releases:  # per-instance settings and index come with the instance
        raw = (await client.request("GET", "/instances", params={"system_id": found.id})).json()  # type: ignore[union-attr]
        detail["instances"] = raw
    return plan.World(detail, [n.model_dump() for n in nodes], newest, releases)


def print_plan(p: plan.Plan, fmt: str, applied: bool) -> None:
    if fmt != "table":
        output.dump({**p.summary(), "applied": applied}, fmt)
        return
    if p.empty:
        click.echo(f"system {p.system}: nothing to change")
        return
    click.echo(f"plan for system {p.system}:")
    for kind in plan.KINDS:
        lines = [a.text for a in p.actions if a.kind == kind]
        if lines:
            click.echo(f"  {HEADINGS[kind]}:")
            for line in lines:
                click.echo(f"    {line}")


class Applier:
    """Performs a plan's actions in order, waiting where the next one depends on it."""

    def __init__(
        self, client: Client, events: wait.Events, world: plan.World, timeout: float
    ) -> None:
        self.client = client
        self.events = events
        self.timeout = timeout
        system = world.system or {}
        self.system_id: str = system.get("id", "")
        self.modules: dict[str, str] = {m["name"]: m["id"] for m in system.get("modules", [])}

    async def run(self, p: plan.Plan) -> None:
        actions = p.ordered()
        destroys = [a for a in actions if a.op == "destroy"]
        deploys = [a for a in actions if a.op == "deploy"]
        for action in actions:
            if action.op in ("destroy", "deploy"):
                continue
            if action.op == "delete_module" and destroys:
                await self._destroy(destroys)
                destroys = []
            await getattr(self, action.op)(**action.args)
        if destroys:
            await self._destroy(destroys)
        if deploys:
            await self._deploy(deploys)

    async def create_system(self, name: str, description: str) -> None:
        self.system_id = (await self.client.create_system(name, description)).id

    async def update_system(self, description: str) -> None:
        await self.client.update_system(self.system_id, description)

    async def create_module(self, module: spec.DesiredModule) -> None:
        made = await self.client.create_module(
            self.system_id,
            module.name,
            module.package,
            module.version,
            module.start_order,
            module.env,
            module.args,
        )
        self.modules[module.name] = made.id

    async def update_module(self, module: str, changes: dict[str, Any]) -> None:
        await self.client.update_module(self.modules[module], **changes)

    async def update_instance(self, instance_id: str, name: str, changes: dict[str, Any]) -> None:
        await self.client.update_instance(instance_id, changes)

    async def delete_module(self, module: str, module_id: str) -> None:
        await self.client.delete_module(module_id)

    async def rollout(self, module: str, version: str | None, then_newest: bool) -> None:
        started = await self.client.rollout_module(
            self.modules[module], {"version": version, "batch_size": 1}
        )
        await wait.operation(self.client, self.events, started, self.timeout)
        if then_newest:
            await self.client.update_module(self.modules[module], version=None)

    async def _destroy(self, actions: list[plan.Action]) -> None:
        ids = {a.args["instance_id"]: a.args["name"] for a in actions}
        await asyncio.gather(*(self.client.destroy_instance(i) for i in ids))
        job = wait.InstanceWait(ids, wait.gone)
        await wait.instances(self.client, self.events, job, "destroy", self.timeout)

    async def _deploy(self, actions: list[plan.Action]) -> None:
        made = []
        for a in actions:
            inst = await self.client.deploy(self.modules[a.args["module"]], a.args["node_id"])
            made.append((inst, a.args))
        job = wait.InstanceWait({i.id: i.name for i, _ in made}, wait.reached("stopped", "running"))
        await wait.instances(self.client, self.events, job, "deploy", self.timeout)
        for inst, args in made:
            changes = {
                k: v
                for k, v in (("env", args["env"] or None), ("args", args["args"]))
                if v is not None
            }
            if changes:
                await self.client.update_instance(inst.id, changes)


@click.command()
@click.option(
    "--file",
    "-f",
    "file",
    required=True,
    type=click.File("r"),
    help="The system file (- for stdin).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option(
    "--no-rollout", is_flag=True, help="Change a module's version without rolling it out."
)
@click.option(
    "--start", "start_after", is_flag=True, help="Then start the system (what runs keeps running)."
)
@click.option("--wait-timeout", type=float, default=1800.0, show_default=True, metavar="SECONDS")
@output.output_option
@pass_options
def apply(
    opts: Options,
    file: Any,
    dry_run: bool,
    no_rollout: bool,
    start_after: bool,
    wait_timeout: float,
    fmt: str,
) -> None:
    """Make a system match a file: print the plan (created, changed, rolled out, removed), then
    apply it. Applying the same file again changes nothing; a changed version is rolled out
    (batch 1) unless --no-rollout. Modules and instances the file does not list are removed.

    \b
    File:
      system: shop
      description: the shop
      modules:
        - name: web
          package: web
          version: "1.0.1"        # absent: the newest
          start_order: 1
          env: {LOG_LEVEL: info}
          instances:              # one entry per instance
            - node: node-a        # hostname, node id or id prefix
              env: {PORT: "8001"} # its own, over the module's

    \b
    Examples:
      gdosctl apply -f shop.yaml --dry-run
      gdosctl apply -f shop.yaml --start
    """
    desired = spec.parse(file.read(), getattr(file, "name", "the file"))

    async def go(client: Client) -> plan.Plan:
        world = await world_of(client, desired.name)
        p = plan.make(desired, world, rollout=not no_rollout)
        if dry_run:
            return p
        if fmt == "table":
            print_plan(p, fmt, applied=False)
        async with wait.Events(client) as events:
            if not p.empty:
                await Applier(client, events, world, wait_timeout).run(p)
            if start_after:
                found = await lookup.system(client, desired.name)
                started = (await client.start_system(found.id)).model_dump()
                await wait.operation(client, events, started, wait_timeout)
        return p

    p = run(opts, go)
    if dry_run or fmt != "table":
        print_plan(p, fmt, applied=not dry_run)
    elif not p.empty:
        click.echo(f"system {p.system}: applied")


@click.command()
@click.argument("system", shell_complete=complete.systems)
@click.option(
    "--file",
    "-f",
    "dest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default: stdout).",
)
@pass_options
def export(opts: Options, system: str, dest: Path | None) -> None:
    """Write a system as a file that `apply` takes: applying it changes nothing.

    \b
    Examples:
      gdosctl export shop > shop.yaml
      gdosctl export shop -f systems/shop.yaml && git diff systems/shop.yaml
    """

    async def go(client: Client) -> tuple[spec.DesiredSystem, int]:
        found = await lookup.system(client, system)
        world = await world_of(client, found.name)
        return desired_of(world), sum(
            1 for i in (world.system or {}).get("instances", []) if not i.get("module_id")
        )

    desired, adopted = run(opts, go)
    text = spec.render(desired)
    if adopted:
        click.echo(
            f"note: {adopted} adopted instance(s) are not in the file (apply leaves them be)",
            err=True,
        )
    if dest is None:
        sys.stdout.write(text)
    else:
        dest.write_text(text)
        click.echo(f"wrote {dest}", err=True)


def desired_of(world: plan.World) -> spec.DesiredSystem:
    """The running system as a file would describe it (the inverse of `plan.make`)."""
    system = world.system
    if system is None:
        raise CtlError("no such system", USAGE)
    hostnames = [n["hostname"] for n in world.nodes]
    modules = []
    for mod in sorted(system.get("modules", []), key=lambda m: (m["start_order"], m["name"])):
        mine = sorted(
            (i for i in system.get("instances", []) if i.get("module_id") == mod["id"]),
            key=plan.instance_order,
        )
        by_node: dict[str, list[dict[str, Any]]] = {}
        for inst in mine:
            by_node.setdefault(inst["node_id"], []).append(inst)
        entries = []
        for node_id, insts in by_node.items():
            host = next((n["hostname"] for n in world.nodes if n["id"] == node_id), node_id)
            name = host if hostnames.count(host) == 1 else node_id
            for inst in insts:
                own = inst.get("settings") or {}
                entries.append(
                    spec.DesiredInstance(name, dict(own.get("env") or {}), own.get("args"))
                )
        modules.append(
            spec.DesiredModule(
                name=mod["name"],
                package=mod["package"],
                version=mod.get("version"),
                start_order=mod["start_order"],
                env=dict(mod.get("env") or {}),
                args=mod.get("args"),
                instances=tuple(entries),
            )
        )
    return spec.DesiredSystem(system["name"], system.get("description", ""), tuple(modules))
