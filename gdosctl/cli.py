"""The root command: global options, and every subcommand loaded only when it is used (so
`gdosctl --version` imports click and nothing heavy)."""

from __future__ import annotations

import importlib
from typing import Any

import click

from gdosctl.session import Options

# name -> (module in gdosctl.commands, attribute, one line for `gdosctl --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "login": ("auth", "login", "Log in to a master and keep the token (a context)."),
    "logout": ("auth", "logout", "Forget the token of a context."),
    "context": ("auth", "context", "List or choose the masters you are logged in to."),
    "status": ("reading", "status", "The overview: nodes, instances, alerts, operations."),
    "nodes": ("reading", "nodes", "List nodes."),
    "ps": ("reading", "ps", "List instances: state, health, CPU, memory, uptime, version."),
    "top": ("top", "top", "Live instance table from the event stream (as pm2 monit)."),
    "logs": ("logs", "logs", "Print (and follow) an instance's log."),
    "alerts": ("reading", "alerts", "List alerts."),
    "audit": ("reading", "audit", "List the audit trail; `audit verify` checks its chain."),
    "operations": ("operations", "operations", "List batch operations and rollouts, or show one."),
    "packages": ("reading", "packages", "List packages (or the versions of one)."),
    "systems": ("reading", "systems", "List systems."),
    "push": ("push", "push", "Upload a package (resumable: run it again after a cut)."),
    "system": ("systems", "system", "Create, show, start, stop or remove a system."),
    "module": ("modules", "module", "Add, change or remove a module of a system."),
    "deploy": ("instances", "deploy", "Deploy a module to nodes (new instances)."),
    "start": ("instances", "start", "Start instances."),
    "stop": ("instances", "stop", "Stop instances."),
    "restart": ("instances", "restart", "Restart instances."),
    "destroy": ("instances", "destroy", "Destroy instances (stop, then remove their files)."),
    "adopt": ("instances", "adopt", "Take over a running process GDOS did not start."),
    "instance": ("instances", "instance", "Show an instance, or set its own env and args."),
    "upgrade": ("releases", "upgrade", "Upgrade one instance to another version."),
    "rollout": ("releases", "rollout", "Roll a module out to a version, batch by batch."),
    "rollback": ("releases", "rollback", "Roll a module back to its previous version."),
    "alert": ("alerting", "alert", "Acknowledge alerts, list rules, silence alerts."),
    "backup": ("admin", "backup", "Create, list, download or restore backups."),
    "user": ("admin", "user", "List, add or remove users."),
    "join-token": ("admin", "join_token", "Issue a token for agents to enrol with."),
    "apply": ("declarative", "apply", "Make a system match a YAML file (prints the plan)."),
    "export": ("declarative", "export", "Write a system as a file that `apply` takes."),
    "completion": ("completion", "completion", "Print the shell completion script."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module, attr, _ = COMMANDS[cmd_name]
            command: click.Command = getattr(
                importlib.import_module(f"gdosctl.commands.{module}"), attr
            )
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # One line each from the table: --help need not import every command.
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version(ctx: click.Context, _: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from protocol import __version__

        click.echo(f"gdosctl {__version__}")
        ctx.exit()


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 ok, 1 the operation failed, 2 usage or an ambiguous name, "
    "3 not found, 4 not authorised, 5 master unreachable. See docs/gdosctl.md.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Print the version and exit.",
)
@click.option(
    "--context",
    "context_name",
    metavar="NAME",
    help="The context (master) to use instead of the current one.",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False),
    help="CA bundle that signed the master's TLS certificate (also GDOS_CA_FILE).",
)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds one request to the master may take.",
)
@click.pass_context
def cli(ctx: click.Context, context_name: str | None, ca_file: str | None, timeout: float) -> None:
    """The command line of GDOS: deploy, run and watch services on your nodes.

    \b
    Start with:
      gdosctl login http://127.0.0.1:8080 --username admin
      gdosctl push payment-1.0.0.zip
      gdosctl apply -f shop.yaml --start
      gdosctl ps
    """
    ctx.obj = Options(context_name, ca_file, timeout)
