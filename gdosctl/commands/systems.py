"""system create|show|start|stop|rm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gdosctl import complete, lookup, output, wait
from gdosctl.commands.options import wait_options
from gdosctl.commands.reading import PS_COLUMNS, instance_rows
from gdosctl.errors import USAGE, CtlError
from gdosctl.output import Column
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client

SYSTEM = click.argument("system", shell_complete=complete.systems)


@click.group()
def system() -> None:
    """Systems: a business system is modules (packages with settings) and their instances.

    \b
    Examples:
      gdosctl system create shop --description "the web shop"
      gdosctl system start shop
    """


@system.command("create")
@click.argument("name")
@click.option("--description", "-d", default="", help="One line about it.")
@output.output_option
@pass_options
def system_create(opts: Options, name: str, description: str, fmt: str) -> None:
    """Create a system.

    \b
    Example:
      gdosctl system create shop -d "the web shop"
    """

    async def go(client: Client) -> dict[str, Any]:
        return (await client.create_system(name, description)).model_dump()

    made = run(opts, go)
    if fmt != "table":
        output.dump(made, fmt)
    else:
        click.echo(f"system {made['name']} created ({made['id']})")


@system.command("show")
@SYSTEM
@output.output_option
@pass_options
def system_show(opts: Options, system: str, fmt: str) -> None:
    """Show a system: its modules and instances.

    \b
    Example:
      gdosctl system show shop -o yaml
    """

    async def go(client: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        found = await lookup.system(client, system)
        detail = (await client.system(found.id)).model_dump()
        return detail, await instance_rows(client, system=found.id)

    detail, rows = run(opts, go)
    if fmt != "table":
        detail["instances"] = rows
        output.dump(detail, fmt)
        return
    output.details(
        [("system", detail["name"]), ("id", detail["id"]), ("description", detail["description"])]
    )
    click.echo()
    output.emit(
        detail["modules"],
        [
            Column("name", "MODULE"),
            Column("package", "PACKAGE"),
            Column("version", "VERSION", lambda v: v or "newest"),
            Column("start_order", "ORDER", right=True),
            Column("env", "ENV", lambda v: " ".join(f"{k}={x}" for k, x in (v or {}).items())),
            Column("id", "ID"),
        ],
        "table",
    )
    click.echo()
    output.emit(rows, PS_COLUMNS, "table")


async def _batch(
    client: Client, query: str, verb: str, no_wait: bool, timeout: float
) -> dict[str, Any]:
    found = await lookup.system(client, query)
    async with wait.Events(client) as events:
        call = client.start_system if verb == "start" else client.stop_system
        started = (await call(found.id)).model_dump()
        if no_wait:
            return started
        return await wait.operation(client, events, started, timeout)


@system.command("start")
@SYSTEM
@wait_options(600.0)
@pass_options
def system_start(opts: Options, system: str, no_wait: bool, wait_timeout: float) -> None:
    """Start every instance of a system, level by level (ascending start_order, each level once
    the one below runs and is healthy), showing each step; exit 1 if it fails.

    \b
    Example:
      gdosctl system start shop
    """
    op = run(opts, lambda c: _batch(c, system, "start", no_wait, wait_timeout))
    click.echo(f"start {op['id']}: {op['state']}")


@system.command("stop")
@SYSTEM
@wait_options(600.0)
@pass_options
def system_stop(opts: Options, system: str, no_wait: bool, wait_timeout: float) -> None:
    """Stop every instance of a system, level by level in reverse order.

    \b
    Example:
      gdosctl system stop shop --no-wait
    """
    op = run(opts, lambda c: _batch(c, system, "stop", no_wait, wait_timeout))
    click.echo(f"stop {op['id']}: {op['state']}")


@system.command("rm")
@SYSTEM
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@pass_options
def system_rm(opts: Options, system: str, yes: bool) -> None:
    """Remove a system and its modules (its instances must be destroyed first).

    \b
    Example:
      gdosctl system rm shop --yes
    """
    if not yes:
        if not output.is_terminal():
            raise CtlError("removing needs --yes when no one can be asked", USAGE)
        click.confirm(f"remove system {system}?", abort=True)

    async def go(client: Client) -> str:
        found = await lookup.system(client, system)
        await client.delete_system(found.id)
        return found.name

    click.echo(f"system {run(opts, go)} removed")
