"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gdosctl.errors import USAGE, CtlError


def wait_options(default_timeout: float = 300.0) -> Callable[[Callable[..., Any]], Any]:
    """`--no-wait` and `--wait-timeout` for actions that take a while."""

    def decorate(f: Callable[..., Any]) -> Any:
        f = click.option(
            "--wait-timeout",
            type=float,
            default=default_timeout,
            show_default=True,
            metavar="SECONDS",
            help="How long to wait before giving up (exit 1; the action goes on).",
        )(f)
        return click.option(
            "--no-wait", is_flag=True, help="Return as soon as the master accepted it."
        )(f)

    return decorate


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--env K=V` given several times."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CtlError(f"--env {pair!r}: write NAME=value", USAGE)
        env[key] = value
    return env


env_option = click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="An environment variable (repeat).",
)
