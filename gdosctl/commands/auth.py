"""login, logout, context: which masters you talk to, and your tokens for them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from gdosctl import config, output
from gdosctl.errors import NOT_AUTHORISED, USAGE, CtlError
from gdosctl.session import Options, pass_options, run_on

if TYPE_CHECKING:
    from console.client import Client
    from protocol.rest import LoginOut


@click.command()
@click.argument("url", required=False)
@click.option("-u", "--username", help="Your user (default: asked, or admin).")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin (for CI), not a prompt."
)
@click.option("--name", "context", metavar="NAME", help="Name of the context (default: host:port).")
@click.option(
    "--ca-file", type=click.Path(dir_okay=False, exists=True), help="CA bundle of a TLS master."
)
@pass_options
def login(
    opts: Options,
    url: str | None,
    username: str | None,
    password_stdin: bool,
    context: str | None,
    ca_file: str | None,
) -> None:
    """Log in to a master; the token is kept in $XDG_CONFIG_HOME/gdos/config.yaml (0600) as a
    context, which becomes the current one.

    \b
    Examples:
      gdosctl login http://127.0.0.1:8080 --username admin
      echo "$GDOS_PASSWORD" | gdosctl login https://gdos.example:8443 -u ci --password-stdin
    """
    cfg = config.Config.load()
    if url is None:
        current = cfg.contexts.get(opts.context or cfg.current)
        url = current.master if current else config.DEFAULT_MASTER
    url = url.rstrip("/")
    if "://" not in url:
        url = "http://" + url
    name = context or opts.context or config.context_name(url)
    if username is None:
        username = (
            "admin"
            if password_stdin or not sys.stdin.isatty()
            else click.prompt("Username", default="admin")
        )
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True)
    else:
        raise CtlError("no terminal to ask the password on: use --password-stdin", USAGE)
    ca = ca_file or opts.ca_file or ""
    target = config.Target(url, "", ca, name)

    async def go(client: Client) -> LoginOut:
        return await client.login(username, password)

    out = run_on(target, go, opts.timeout)
    cfg = config.Config.load()
    cfg.contexts[name] = config.Context(
        master=url,
        username=out.user.username,
        token=out.token,
        expires_at=out.expires_at,
        ca_file=ca,
    )
    cfg.current = name
    path = cfg.save()
    click.echo(f"logged in to {url} as {out.user.username} ({out.user.role}); context {name}")
    click.echo(f"token kept in {path}", err=True)


@click.command()
@click.argument("name", required=False)
@pass_options
def logout(opts: Options, name: str | None) -> None:
    """Forget the token of a context (the current one by default).

    \b
    Example:
      gdosctl logout prod
    """
    cfg = config.Config.load()
    name = name or opts.context or cfg.current
    ctx = cfg.contexts.get(name)
    if ctx is None:
        raise CtlError(f"no context {name!r}", USAGE)
    ctx.token, ctx.expires_at = "", ""
    cfg.save()
    click.echo(f"logged out of {ctx.master} (context {name})")


@click.group()
def context() -> None:
    """List the masters you logged in to, and choose the current one.

    \b
    Examples:
      gdosctl context ls
      gdosctl context use prod
    """


@context.command("ls")
@output.output_option
def context_ls(fmt: str) -> None:
    """List contexts (* marks the current one).

    \b
    Example:
      gdosctl context ls -o json
    """
    cfg = config.Config.load()
    rows = [
        {
            "current": name == cfg.current,
            "name": name,
            "master": ctx.master,
            "username": ctx.username,
            "expires_at": ctx.expires_at,
            "logged_in": bool(ctx.token) and not ctx.expired(),
        }
        for name, ctx in sorted(cfg.contexts.items())
    ]
    output.emit(
        rows,
        [
            output.Column("current", "", lambda v: "*" if v else ""),
            output.Column("name", "NAME"),
            output.Column("master", "MASTER"),
            output.Column("username", "USER"),
            output.Column("logged_in", "LOGGED IN", lambda v: "yes" if v else "no"),
            output.Column("expires_at", "EXPIRES", output.when),
        ],
        fmt,
    )


@context.command("use")
@click.argument("name")
def context_use(name: str) -> None:
    """Make a context the current one.

    \b
    Example:
      gdosctl context use prod
    """
    cfg = config.Config.load()
    if name not in cfg.contexts:
        known = ", ".join(sorted(cfg.contexts)) or "none yet: gdosctl login URL"
        raise CtlError(f"no context {name!r} (known: {known})", USAGE)
    cfg.current = name
    cfg.save()
    ctx = cfg.contexts[name]
    click.echo(f"now using {name} ({ctx.master})")
    if not ctx.token or ctx.expired():
        raise CtlError(f"your session expired; run `gdosctl login {ctx.master}`", NOT_AUTHORISED)
