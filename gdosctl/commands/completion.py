"""completion: the shell script that completes commands, options and names."""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for your shell (names of instances, systems, modules and
    nodes are completed from the master).

    \b
    Examples:
      gdosctl completion bash > ~/.local/share/bash-completion/completions/gdosctl
      gdosctl completion zsh > "${fpath[1]}/_gdosctl"
      gdosctl completion fish > ~/.config/fish/completions/gdosctl.fish
    """
    from click.shell_completion import get_completion_class

    from gdosctl.cli import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "gdosctl", "_GDOSCTL_COMPLETE").source())
