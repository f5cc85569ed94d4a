"""Acting on instances: deploy, start, stop, restart, destroy, adopt; one instance's details and
own settings."""

from __future__ import annotations

import asyncio
import shlex
from typing import TYPE_CHECKING, Any

import click

from gdosctl import complete, lookup, output, wait
from gdosctl.commands.options import env_option, parse_env, wait_options
from gdosctl.errors import USAGE, CtlError
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client
    from protocol.rest import InstanceOut

INSTANCES = click.argument("instances", nargs=-1, required=True, shell_complete=complete.instances)


async def _act(
    client: Client,
    queries: tuple[str, ...],
    verb: str,
    goal: Any,
    no_wait: bool,
    timeout: float,
) -> list[InstanceOut]:
    targets = await lookup.instances(client, list(queries))
    if goal == "restarted":
        goal = wait.restarted({i.id: i.started_at for i in targets})
    calls = {
        "start": client.start_instance,
        "stop": client.stop_instance,
        "restart": client.restart_instance,
        "destroy": client.destroy_instance,
    }[verb]
    async with wait.Events(client) as events:
        answers = await asyncio.gather(*(calls(i.id) for i in targets))
        if not no_wait:
            job = wait.InstanceWait({i.id: i.name for i in targets}, goal)
            await wait.instances(client, events, job, f"{verb} {len(targets)} instance(s)", timeout)
    return list(answers)


def _report(verb: str, answers: list[InstanceOut], no_wait: bool) -> None:
    for inst in answers:
        click.echo(f"{inst.name}: {verb} requested" if no_wait else f"{inst.name}: {verb} done")


@click.command()
@INSTANCES
@wait_options(120.0)
@pass_options
def start(opts: Options, instances: tuple[str, ...], no_wait: bool, wait_timeout: float) -> None:
    """Start instances and wait until they run (exit 1 if one exits or fails instead).

    \b
    Examples:
      gdosctl start web-1 web-2
      gdosctl start shop/web-1 --no-wait
    """
    goal = wait.reached("running")
    _report(
        "start",
        run(opts, lambda c: _act(c, instances, "start", goal, no_wait, wait_timeout)),
        no_wait,
    )


@click.command()
@INSTANCES
@wait_options(120.0)
@pass_options
def stop(opts: Options, instances: tuple[str, ...], no_wait: bool, wait_timeout: float) -> None:
    """Stop instances and wait until they are stopped.

    \b
    Example:
      gdosctl stop web-1
    """

    def goal(inst: dict[str, Any]) -> str | None:
        return "done" if inst.get("state") in ("stopped", "exited", "failed") else None

    _report(
        "stop",
        run(opts, lambda c: _act(c, instances, "stop", goal, no_wait, wait_timeout)),
        no_wait,
    )


@click.command()
@INSTANCES
@wait_options(120.0)
@pass_options
def restart(opts: Options, instances: tuple[str, ...], no_wait: bool, wait_timeout: float) -> None:
    """Restart instances and wait until they run again.

    \b
    Example:
      gdosctl restart web-1
    """
    _report(
        "restart",
        run(opts, lambda c: _act(c, instances, "restart", "restarted", no_wait, wait_timeout)),
        no_wait,
    )


@click.command()
@INSTANCES
@click.option("--yes", "-y", is_flag=True, help="Do not ask (scripts must give it).")
@wait_options(120.0)
@pass_options
def destroy(
    opts: Options, instances: tuple[str, ...], yes: bool, no_wait: bool, wait_timeout: float
) -> None:
    """Destroy instances: stop them and remove their files from their nodes.

    \b
    Example:
      gdosctl destroy web-3 --yes
    """
    if not yes:
        if not output.is_terminal():
            raise CtlError("destroying needs --yes when no one can be asked", USAGE)
        click.confirm(f"destroy {', '.join(instances)}?", abort=True)
    _report(
        "destroy",
        run(opts, lambda c: _act(c, instances, "destroy", wait.gone, no_wait, wait_timeout)),
        no_wait,
    )


@click.command()
@click.argument("module", shell_complete=complete.modules)
@click.option(
    "--node",
    "-n",
    "node_names",
    multiple=True,
    required=True,
    metavar="NODE",
    shell_complete=complete.nodes,
    help="Node to place an instance on (hostname or id prefix; repeat for more).",
)
@click.option("--start", "start_after", is_flag=True, help="Start them once deployed.")
@output.output_option
@wait_options(300.0)
@pass_options
def deploy(
    opts: Options,
    module: str,
    node_names: tuple[str, ...],
    start_after: bool,
    fmt: str,
    no_wait: bool,
    wait_timeout: float,
) -> None:
    """Deploy a module: one new instance per --node (the agent fetches, checks and unpacks).

    \b
    Examples:
      gdosctl deploy shop/web --node node-a --node node-b --start
      gdosctl deploy web -n 3f9a -o json
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        mod, _system = await lookup.module(client, module)
        node_list = await client.nodes()
        targets = [await lookup.node(client, n, node_list) for n in node_names]
        async with wait.Events(client) as events:
            made = [await client.deploy(mod.id, n.id) for n in targets]
            if not no_wait or start_after:
                job = wait.InstanceWait(
                    {i.id: i.name for i in made}, wait.reached("stopped", "running")
                )
                await wait.instances(client, events, job, f"deploy {mod.name}", wait_timeout)
            if start_after:
                await asyncio.gather(*(client.start_instance(i.id) for i in made))
                if not no_wait:
                    job = wait.InstanceWait({i.id: i.name for i in made}, wait.reached("running"))
                    await wait.instances(client, events, job, "start", wait_timeout)
        return [(await client.instance(i.id)).model_dump() for i in made]

    made = run(opts, go)
    if fmt != "table":
        output.dump(made, fmt)
        return
    for inst in made:
        click.echo(f"{inst['name']}: {inst['state']} ({inst['id']})")


@click.command()
@click.argument("system", shell_complete=complete.systems)
@click.argument("name")
@click.option("--node", "-n", required=True, metavar="NODE", shell_complete=complete.nodes)
@click.option("--pid-file", help="Find the process by its PID file.")
@click.option("--process-name", help="Find the process by its name (e.g. java).")
@click.option(
    "--cmdline", "cmdline_pattern", metavar="PATTERN", help="Find it by command line (RE2)."
)
@click.option("--start-command", help="How to start it again (words, no shell).")
@click.option("--stop-command", help="How to stop it (default: SIGTERM to its tree).")
@click.option("--restart", type=click.Choice(["no", "on-failure", "always"]), default="no")
@click.option(
    "--log", "logs", multiple=True, metavar="NAME=PATH", help="A log file to show (repeat)."
)
@click.option("--start-order", type=int, default=0, show_default=True)
@output.output_option
@pass_options
def adopt(
    opts: Options,
    system: str,
    name: str,
    node: str,
    pid_file: str | None,
    process_name: str | None,
    cmdline_pattern: str | None,
    start_command: str | None,
    stop_command: str | None,
    restart: str,
    logs: tuple[str, ...],
    start_order: int,
    fmt: str,
) -> None:
    """Take over a running process GDOS did not start, as an instance of SYSTEM named NAME.

    \b
    Examples:
      gdosctl adopt shop billing --node node-a --pid-file /run/billing.pid \\
          --start-command "/opt/billing/bin/start --daemon"
      gdosctl adopt shop cache --node node-a --process-name redis-server
    """
    given = [
        s
        for s, v in [
            ("pid_file", pid_file),
            ("process_name", process_name),
            ("cmdline", cmdline_pattern),
        ]
        if v
    ]
    if len(given) != 1:
        raise CtlError("give one of --pid-file, --process-name, --cmdline", USAGE)
    log_paths = {}
    for item in logs:
        key, sep, path = item.partition("=")
        if not sep:
            raise CtlError(f"--log {item!r}: write NAME=PATH", USAGE)
        log_paths[key] = path

    async def go(client: Client) -> dict[str, Any]:
        sys_out = await lookup.system(client, system)
        node_out = await lookup.node(client, node)
        body = {
            "system_id": sys_out.id,
            "node_id": node_out.id,
            "name": name,
            "strategy": given[0],
            "pid_file": pid_file,
            "process_name": process_name,
            "cmdline_pattern": cmdline_pattern,
            "start_command": shlex.split(start_command) if start_command else None,
            "stop_command": shlex.split(stop_command) if stop_command else None,
            "restart": restart,
            "log_paths": log_paths,
            "start_order": start_order,
        }
        return (await client.adopt({k: v for k, v in body.items() if v is not None})).model_dump()

    inst = run(opts, go)
    if fmt != "table":
        output.dump(inst, fmt)
    else:
        click.echo(f"{inst['name']}: adopted, pid {inst['pid']}, {inst['state']} ({inst['id']})")


@click.group()
def instance() -> None:
    """One instance: its details, or its own env and args (over its module's).

    \b
    Examples:
      gdosctl instance show web-1
      gdosctl instance set web-2 --env PORT=8002
    """


@instance.command("show")
@click.argument("name", shell_complete=complete.instances)
@output.output_option
@pass_options
def instance_show(opts: Options, name: str, fmt: str) -> None:
    """Show an instance: state, health, version, pid, last error, its own settings.

    \b
    Example:
      gdosctl instance show shop/web-1 -o json
    """

    async def go(client: Client) -> dict[str, Any]:
        found = await lookup.instance(client, name)
        data: dict[str, Any] = (await client.request("GET", f"/instances/{found.id}")).json()
        return data  # every field the master has

    inst = run(opts, go)
    if fmt != "table":
        output.dump(inst, fmt)
        return
    output.details([(k, v) for k, v in inst.items()])


@instance.command("set")
@click.argument("name", shell_complete=complete.instances)
@env_option
@click.option("--arg", "args", multiple=True, help="Its own argument list (repeat; replaces).")
@click.option("--clear-env", is_flag=True, help="Drop its own env (the module's applies).")
@click.option("--clear-args", is_flag=True, help="Drop its own args (the module's apply).")
@pass_options
def instance_set(
    opts: Options,
    name: str,
    env: tuple[str, ...],
    args: tuple[str, ...],
    clear_env: bool,
    clear_args: bool,
) -> None:
    """Set an instance's own env and args, applied at its next start (needs the releases API).

    \b
    Example:
      gdosctl instance set web-2 --env PORT=8002 && gdosctl restart web-2
    """
    changes: dict[str, Any] = {}
    if env or clear_env:
        changes["env"] = None if clear_env else parse_env(env)
    if args or clear_args:
        changes["args"] = None if clear_args else list(args)
    if not changes:
        raise CtlError("nothing to set: give --env, --arg, --clear-env or --clear-args", USAGE)

    async def go(client: Client) -> dict[str, Any]:
        inst = await lookup.instance(client, name)
        return await client.update_instance(inst.id, changes)

    inst = run(opts, go)
    click.echo(f"{inst.get('name')}: settings changed; they apply at its next start")
