"""backup create|ls|download|restore, user ls|add|rm, join-token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gdosctl import output
from gdosctl.commands.alerting import seconds
from gdosctl.errors import USAGE, CtlError
from gdosctl.output import Column
from gdosctl.resolve import Named, pick
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client
    from protocol.rest_records import BackupOut


@click.group()
def backup() -> None:
    """Backups of the master's database: online, consistent, restorable without a restart.

    \b
    Examples:
      gdosctl backup create
      gdosctl backup download 3f9a ./gdos.db
    """


async def _backup(client: Client, query: str) -> BackupOut:
    found = await client.backups()
    chosen = pick("backup", query, [Named(b.id, b.id) for b in found])
    return next(b for b in found if b.id == chosen.id)


BACKUP_COLUMNS = [
    Column("created_at", "CREATED", output.when),
    Column("kind", "KIND"),
    Column("size", "SIZE", output.size, right=True),
    Column("created_by", "BY"),
    Column("id", "ID"),
]


@backup.command("create")
@output.output_option
@pass_options
def backup_create(opts: Options, fmt: str) -> None:
    """Make a backup now.

    \b
    Example:
      gdosctl backup create -o json | jq -r .id
    """

    async def go(client: Client) -> dict[str, Any]:
        return (await client.create_backup()).model_dump()

    made = run(opts, go)
    if fmt != "table":
        output.dump(made, fmt)
    else:
        click.echo(f"backup {made['id']} ({output.size(made['size'])})")


@backup.command("ls")
@output.output_option
@pass_options
def backup_ls(opts: Options, fmt: str) -> None:
    """List backups, newest first.

    \b
    Example:
      gdosctl backup ls
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        return [b.model_dump() for b in await client.backups()]

    output.emit(run(opts, go), BACKUP_COLUMNS, fmt)


@backup.command("download")
@click.argument("backup_id")
@click.argument("dest", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_options
def backup_download(opts: Options, backup_id: str, dest: Path | None) -> None:
    """Download a backup (admin: it holds password hashes) to DEST (default: gdos-<id>.db).

    \b
    Example:
      gdosctl backup download 3f9a /srv/backups/gdos.db
    """

    async def go(client: Client) -> Path:
        found = await _backup(client, backup_id)
        path = dest or Path(f"gdos-{found.id}.db")
        return await client.download_backup(found.id, path)

    click.echo(f"saved {run(opts, go)}")


@backup.command("restore")
@click.argument("backup_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@pass_options
def backup_restore(opts: Options, backup_id: str, yes: bool) -> None:
    """Restore a backup (admin): the master serves it at once; the state before is kept as a
    backup too.

    \b
    Example:
      gdosctl backup restore 3f9a --yes
    """
    if not yes:
        if not output.is_terminal():
            raise CtlError("restoring needs --yes when no one can be asked", USAGE)
        click.confirm(f"restore backup {backup_id} over the current state?", abort=True)

    async def go(client: Client) -> dict[str, Any]:
        found = await _backup(client, backup_id)
        return (await client.restore_backup(found.id)).model_dump()

    out = run(opts, go)
    click.echo(f"restored {out['restored']}; the state before is backup {out['safety_backup']}")


@click.group()
def user() -> None:
    """Users of the master (admin only).

    \b
    Examples:
      gdosctl user ls
      gdosctl user add ci --role operator --password-stdin < ci-password.txt
    """


@user.command("ls")
@output.output_option
@pass_options
def user_ls(opts: Options, fmt: str) -> None:
    """List users.

    \b
    Example:
      gdosctl user ls -o json
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        return [u.model_dump() for u in await client.users()]

    output.emit(
        run(opts, go),
        [
            Column("username", "USER"),
            Column("role", "ROLE"),
            Column("created_at", "CREATED", output.when),
        ],
        fmt,
    )


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["admin", "operator", "viewer"]),
    default="viewer",
    show_default=True,
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@pass_options
def user_add(opts: Options, username: str, role: str, password_stdin: bool) -> None:
    """Add a user.

    \b
    Example:
      gdosctl user add alice --role operator
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise CtlError("no terminal to ask the password on: use --password-stdin", USAGE)

    async def go(client: Client) -> dict[str, Any]:
        return (await client.create_user(username, password, role)).model_dump()

    made = run(opts, go)
    click.echo(f"user {made['username']} ({made['role']}) added")


@user.command("rm")
@click.argument("username")
@pass_options
def user_rm(opts: Options, username: str) -> None:
    """Remove a user.

    \b
    Example:
      gdosctl user rm alice
    """

    async def go(client: Client) -> None:
        await client.delete_user(username)

    run(opts, go)
    click.echo(f"user {username} removed")


@click.command("join-token")
@click.option(
    "--ttl", default="24h", show_default=True, help="How long it is valid: 15m, 24h, 7d, or never."
)
@click.option("--max-uses", type=click.IntRange(1), help="How many nodes may enrol with it.")
@output.output_option
@pass_options
def join_token(opts: Options, ttl: str, max_uses: int | None, fmt: str) -> None:
    """Issue a join token: an agent enrols once with it (`gdos-agent --token ...`).

    \b
    Example:
      gdosctl join-token --ttl 1h --max-uses 3
    """
    ttl_seconds = None if ttl == "never" else seconds(ttl)

    async def go(client: Client) -> dict[str, Any]:
        return (await client.create_join_token(ttl_seconds, max_uses)).model_dump()

    made = run(opts, go)
    if fmt != "table":
        output.dump(made, fmt)
        return
    click.echo(made["token"])
    click.echo(
        f"expires {output.when(made['expires_at'])} UTC; uses: {max_uses or 'any'}", err=True
    )
