"""Running a command against the master: the client for the chosen context, asyncio, and every
failure of a call turned into one line and the contract's exit code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import click

from gdosctl import config
from gdosctl.errors import CtlError, from_client_error

if TYPE_CHECKING:
    from console.client import Client

T = TypeVar("T")


@dataclass
class Options:
    """The global options (`gdosctl --context X --ca-file F ...`), on click's context object."""

    context: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0

    def target(self, need_token: bool = True) -> config.Target:
        return config.resolve_target(config.Config.load(), self.context, self.ca_file, need_token)


pass_options = click.make_pass_decorator(Options)


def run(opts: Options, work: Callable[[Client], Awaitable[T]], need_token: bool = True) -> T:
    """Run `work(client)` to its end; a ClientError becomes a CtlError with its exit code."""
    target = opts.target(need_token)
    return run_on(target, work, opts.timeout)


def run_on(target: config.Target, work: Callable[[Client], Awaitable[T]], timeout: float) -> T:
    import asyncio

    from console.client import Client, ClientError

    async def go() -> T:
        verify: bool | str = target.ca_file or True
        async with Client(
            target.master, token=target.token or None, verify=verify, timeout=timeout
        ) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ClientError as exc:
        raise from_client_error(exc, target.master, bool(target.token)) from None
    except OSError as exc:  # e.g. a CA file that cannot be read
        raise CtlError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
