"""module add|set|rm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gdosctl import complete, lookup, output
from gdosctl.commands.options import env_option, parse_env
from gdosctl.errors import USAGE, CtlError
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client


@click.group()
def module() -> None:
    """Modules: a package (a version, or the newest) with its settings, in a system.

    \b
    Examples:
      gdosctl module add shop web --package web --version 1.0.1 --start-order 2
      gdosctl module set shop/web --env LOG_LEVEL=debug
    """


@module.command("add")
@click.argument("system", shell_complete=complete.systems)
@click.argument("name")
@click.option("--package", "-p", "package", required=True, help="Package name.")
@click.option("--version", "-v", "version", help="Package version (default: the newest).")
@click.option("--start-order", type=int, default=1, show_default=True)
@env_option
@click.option("--arg", "args", multiple=True, help="Argument (repeat; default: the package's).")
@output.output_option
@pass_options
def module_add(
    opts: Options,
    system: str,
    name: str,
    package: str,
    version: str | None,
    start_order: int,
    env: tuple[str, ...],
    args: tuple[str, ...],
    fmt: str,
) -> None:
    """Add a module NAME to SYSTEM.

    \b
    Example:
      gdosctl module add shop web -p web -v 1.0.1 --env LOG_LEVEL=info
    """
    values = parse_env(env)

    async def go(client: Client) -> dict[str, Any]:
        found = await lookup.system(client, system)
        made = await client.create_module(
            found.id, name, package, version, start_order, values, list(args) if args else None
        )
        return made.model_dump()

    made = run(opts, go)
    if fmt != "table":
        output.dump(made, fmt)
    else:
        click.echo(f"module {system}/{made['name']} added ({made['id']})")


@module.command("set")
@click.argument("module_name", metavar="MODULE", shell_complete=complete.modules)
@click.option("--version", "-v", "version", help="Package version.")
@click.option("--newest", is_flag=True, help="Always the newest version of the package.")
@click.option("--start-order", type=int)
@env_option
@click.option("--arg", "args", multiple=True, help="Argument list (repeat; replaces).")
@output.output_option
@pass_options
def module_set(
    opts: Options,
    module_name: str,
    version: str | None,
    newest: bool,
    start_order: int | None,
    env: tuple[str, ...],
    args: tuple[str, ...],
    fmt: str,
) -> None:
    """Change a module; running instances keep theirs until their next start (env, args) or a
    rollout (version).

    \b
    Examples:
      gdosctl module set shop/web --env LOG_LEVEL=debug --env WORKERS=4
      gdosctl module set web --version 1.0.2 && gdosctl rollout web
    """
    changes: dict[str, Any] = {}
    if version and newest:
        raise CtlError("give --version or --newest, not both", USAGE)
    if version or newest:
        changes["version"] = version
    if start_order is not None:
        changes["start_order"] = start_order
    if env:
        changes["env"] = parse_env(env)
    if args:
        changes["args"] = list(args)
    if not changes:
        raise CtlError(
            "nothing to change: give --version, --newest, --start-order, --env or --arg", USAGE
        )

    async def go(client: Client) -> dict[str, Any]:
        mod, _ = await lookup.module(client, module_name)
        return (await client.update_module(mod.id, **changes)).model_dump()

    changed = run(opts, go)
    if fmt != "table":
        output.dump(changed, fmt)
    else:
        click.echo(f"module {changed['name']} changed")


@module.command("rm")
@click.argument("module_name", metavar="MODULE", shell_complete=complete.modules)
@pass_options
def module_rm(opts: Options, module_name: str) -> None:
    """Remove a module (its instances must be destroyed first).

    \b
    Example:
      gdosctl module rm shop/old-worker
    """

    async def go(client: Client) -> str:
        mod, sys_out = await lookup.module(client, module_name)
        await client.delete_module(mod.id)
        return f"{sys_out.name}/{mod.name}"

    click.echo(f"module {run(opts, go)} removed")
