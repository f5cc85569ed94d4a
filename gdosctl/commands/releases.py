"""upgrade, rollout, rollback (API.md "Releases")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gdosctl import complete, lookup, wait
from gdosctl.commands.options import wait_options
from gdosctl.errors import USAGE, CtlError
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client


def parse_batch_size(value: str) -> int | str:
    """`2` or `25%`."""
    if value.endswith("%") and value[:-1].isdigit():
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise CtlError(f"--batch-size {value!r}: a count (2) or a share (25%)", USAGE)


@click.command()
@click.argument("instance", shell_complete=complete.instances)
@click.option(
    "--version", "-v", "version", help="The version (default: its module's, or the newest)."
)
@wait_options(600.0)
@pass_options
def upgrade(
    opts: Options, instance: str, version: str | None, no_wait: bool, wait_timeout: float
) -> None:
    """Upgrade one instance: its node unpacks the release beside the running one, then stop,
    switch, start (a stopped instance only switches). Exit 1 if it fails.

    \b
    Example:
      gdosctl upgrade web-1 --version 1.0.2
    """

    async def go(client: Client) -> dict[str, Any]:
        inst = await lookup.instance(client, instance)
        before = {"version": inst.version, "last_error": inst.last_error}
        async with wait.Events(client) as events:
            answer = await client.upgrade_instance(inst.id, version)
            if no_wait:
                return answer

            def goal(data: dict[str, Any]) -> str | None:
                error = data.get("last_error") or ""
                if error.startswith("upgrade failed") and error != before["last_error"]:
                    return "failed"
                if data.get("state") in ("starting", "stopping", "deploying"):
                    return None
                moved = data.get("version") != before["version"]
                return (
                    "done"
                    if moved and (version is None or data.get("version") == version)
                    else None
                )

            job = wait.InstanceWait({inst.id: inst.name}, goal)
            await wait.instances(client, events, job, f"upgrade {inst.name}", wait_timeout)
            return (await client.instance(inst.id)).model_dump()

    inst = run(opts, go)
    click.echo(f"{inst.get('name')}: {inst.get('state')} on {inst.get('version')}")


@click.command()
@click.argument("module_name", metavar="MODULE", shell_complete=complete.modules)
@click.option("--version", "-v", "version", help="The version (default: the newest upload).")
@click.option(
    "--batch-size", default="1", show_default=True, help="Instances at a time: 2, or 25%."
)
@click.option("--canary", type=int, default=0, show_default=True, help="First N alone, then pause.")
@click.option("--ready-timeout", type=float, help="Seconds each instance may take to be healthy.")
@click.option("--min-ready-seconds", type=float, help="Seconds up, without a health check.")
@click.option("--pause-seconds", type=float, help="Seconds between batches.")
@click.option("--no-auto-rollback", is_flag=True, help="Leave a failed rollout where it stopped.")
@wait_options(3600.0)
@pass_options
def rollout(
    opts: Options,
    module_name: str,
    version: str | None,
    batch_size: str,
    canary: int,
    ready_timeout: float | None,
    min_ready_seconds: float | None,
    pause_seconds: float | None,
    no_auto_rollback: bool,
    no_wait: bool,
    wait_timeout: float,
) -> None:
    """Roll a module out to a version: every node prepares the release first, then batch by
    batch, each gated on health; a failure rolls back (unless --no-auto-rollback) and exits 1.

    \b
    Examples:
      gdosctl rollout shop/web --version 1.0.2
      gdosctl rollout web --batch-size 25% --canary 1
    """
    body: dict[str, Any] = {
        "version": version,
        "batch_size": parse_batch_size(batch_size),
        "canary": canary,
        "auto_rollback": not no_auto_rollback,
        "ready_timeout": ready_timeout,
        "min_ready_seconds": min_ready_seconds,
        "pause_seconds": pause_seconds,
    }
    body = {k: v for k, v in body.items() if v is not None or k == "version"}
    op = run(opts, lambda c: _operation(c, module_name, "rollout", body, no_wait, wait_timeout))
    click.echo(
        f"rollout {op.get('id')}: {op.get('state')}" + (" (paused)" if op.get("paused") else "")
    )


@click.command()
@click.argument("module_name", metavar="MODULE", shell_complete=complete.modules)
@click.option("--version", "-v", "version", help="The version (default: the previous one).")
@wait_options(3600.0)
@pass_options
def rollback(
    opts: Options, module_name: str, version: str | None, no_wait: bool, wait_timeout: float
) -> None:
    """Roll a module back to the release it ran before (kept on the nodes: nothing to fetch).

    \b
    Example:
      gdosctl rollback shop/web
    """
    body = {"version": version}
    op = run(opts, lambda c: _operation(c, module_name, "rollback", body, no_wait, wait_timeout))
    click.echo(f"rollback {op.get('id')}: {op.get('state')}")


async def _operation(
    client: Client, query: str, kind: str, body: dict[str, Any], no_wait: bool, timeout: float
) -> dict[str, Any]:
    mod, _ = await lookup.module(client, query)
    call = client.rollout_module if kind == "rollout" else client.rollback_module
    async with wait.Events(client) as events:
        started = await call(mod.id, body)
        if no_wait:
            return started
        return await wait.operation(client, events, started, timeout)
