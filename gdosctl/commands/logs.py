"""logs: an instance's log, its tail, followed live."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import click

from gdosctl import complete, lookup, output
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client

MAX_TAIL = 1 << 20  # what the master serves at most


def last_lines(text: str, count: int | None) -> str:
    if count is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:]) if count else ""


@click.command()
@click.argument("instance", shell_complete=complete.instances)
@click.option("--follow", "-f", is_flag=True, help="Keep printing what is written (Ctrl-C ends).")
@click.option("--tail", "tail", type=click.IntRange(0), metavar="N", help="Only the last N lines.")
@click.option(
    "--name",
    default="stdout",
    show_default=True,
    help="Which log: stdout, stderr, or one of its log_paths.",
)
@click.option("--list", "list_logs", is_flag=True, help="List the instance's logs and their sizes.")
@pass_options
def logs(
    opts: Options, instance: str, follow: bool, tail: int | None, name: str, list_logs: bool
) -> None:
    """Print an instance's log (the last 64 KiB, or --tail N lines); -f follows it live.

    \b
    Examples:
      gdosctl logs web-1 --tail 50
      gdosctl logs shop/web-1 --name stderr -f
      gdosctl logs web-1 --list
    """

    async def go(client: Client) -> None:
        inst = await lookup.instance(client, instance)
        if list_logs:
            files = [f.model_dump() for f in await client.logs(inst.id)]
            output.emit(
                files,
                [
                    output.Column("name", "NAME"),
                    output.Column("size", "SIZE", output.size, right=True),
                    output.Column("path", "PATH"),
                    output.Column("error", "ERROR"),
                ],
                "table",
            )
            return
        tail_bytes = 65536 if tail is None else min(MAX_TAIL, max(65536, tail * 512))
        if not follow:
            text = (await client.log_tail(inst.id, name, tail_bytes)).text
            _write(last_lines(text, tail))
            return
        from console.client import LogFollower

        first = True
        async for text in LogFollower(client, inst.id, name, tail_bytes).follow():
            _write(last_lines(text, tail) if first else text)
            first = False

    with contextlib.suppress(KeyboardInterrupt):
        run(opts, go)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
