"""Operations: list batch operations and rollouts, show one live, resume a paused canary, cancel."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from gdosctl import lookup, output
from gdosctl.output import Column
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client


OPERATION_COLUMNS = [
    Column("created_at", "CREATED", output.when),
    Column("kind", "KIND"),
    Column("system", "SYSTEM"),
    Column("state", "STATE", output.state),
    Column("progress", "STEPS", right=True),
    Column("actor", "ACTOR"),
    Column("error", "ERROR"),
    Column("id", "ID"),
]


@click.group(invoke_without_command=True)
@click.option("--system", "-s", metavar="SYSTEM", help="Only this system's operations.")
@click.option("--state", type=click.Choice(["running", "succeeded", "failed"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@output.output_option
@click.pass_context
def operations(
    ctx: click.Context, system: str | None, state: str | None, limit: int, fmt: str
) -> None:
    """List batch operations (start, stop, rollout, rollback), newest first.

    \b
    Examples:
      gdosctl operations --state running
      gdosctl operations show 3f9a
      gdosctl operations resume 3f9a
    """
    if ctx.invoked_subcommand is not None:
        return
    opts = ctx.find_object(Options)
    assert opts is not None

    async def go(client: Client) -> list[dict[str, Any]]:
        system_id = (await lookup.system(client, system)).id if system else None
        params = {"system_id": system_id, "state": state, "limit": limit}
        resp, systems = await asyncio.gather(
            client.request("GET", "/operations", params=params), client.systems()
        )
        names = {s.id: s.name for s in systems}
        rows: list[dict[str, Any]] = resp.json()
        for row in rows:
            steps = row.get("steps") or []
            finished = sum(s.get("state") in ("done", "skipped", "rolled_back") for s in steps)
            row["system"] = names.get(row.get("system_id", ""), row.get("system_id"))
            row["progress"] = f"{finished}/{len(steps)}"
        return rows

    output.emit(run(opts, go), OPERATION_COLUMNS, fmt)


async def _operation(client: Client, query: str) -> dict[str, Any]:
    """An operation by id or id prefix (among the newest thousand)."""
    from gdosctl.resolve import Named, pick

    resp = await client.request("GET", "/operations", params={"limit": 1000})
    ops: list[dict[str, Any]] = resp.json()
    chosen = pick("operation", query, [Named(o["id"], o["id"]) for o in ops])
    return await client.operation_data(chosen.id)


@operations.command("show")
@click.argument("operation")
@output.output_option
@pass_options
def operation_show(opts: Options, operation: str, fmt: str) -> None:
    """Show one operation with its steps.

    \b
    Example:
      gdosctl operations show 3f9a
    """
    op = run(opts, lambda client: _operation(client, operation))
    if fmt != "table":
        output.dump(op, fmt)
        return
    output.details(
        [
            ("id", op.get("id")),
            ("kind", op.get("kind")),
            ("state", f"{op.get('state')}{' (paused)' if op.get('paused') else ''}"),
            ("actor", op.get("actor")),
            ("created", output.when(op.get("created_at"))),
            ("finished", output.when(op.get("finished_at"))),
            ("error", op.get("error") or "-"),
        ]
    )
    output.emit(
        op.get("steps") or [],
        [
            Column("name", "INSTANCE"),
            Column("level", "LEVEL", right=True),
            Column("state", "STATE", output.state),
            Column("error", "ERROR"),
        ],
        "table",
    )


@operations.command("resume")
@click.argument("operation")
@pass_options
def operation_resume(opts: Options, operation: str) -> None:
    """Let a rollout paused after its canary go on.

    \b
    Example:
      gdosctl operations resume 3f9a
    """

    _act(opts, operation, "resume", "resumed")


@operations.command("cancel")
@click.argument("operation")
@pass_options
def operation_cancel(opts: Options, operation: str) -> None:
    """Cancel a running operation (a rollout switches back what it touched).

    \b
    Example:
      gdosctl operations cancel 3f9a
    """

    _act(opts, operation, "cancel", "cancelled")


def _act(opts: Options, operation: str, verb: str, done: str) -> None:
    """Resume or cancel the operation a name or id prefix designates, and say so."""

    async def go(client: Client) -> dict[str, Any]:
        op = await _operation(client, operation)
        call = client.resume_operation if verb == "resume" else client.cancel_operation
        return await call(op["id"])

    op = run(opts, go)
    click.echo(f"{op.get('kind')} {op.get('id')} {done}")
