"""Shell completion of names (instances, systems, modules, nodes), asked of the master with a
short timeout; any failure completes nothing rather than print an error into the shell."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem

if TYPE_CHECKING:
    from console.client import Client

TIMEOUT = 3.0


def _names(
    ctx: click.Context, fetch: Callable[[Client], Awaitable[list[str]]], incomplete: str
) -> list[CompletionItem]:
    from gdosctl import config
    from gdosctl.session import run_on

    try:
        root = ctx.find_root().params
        target = config.resolve_target(
            config.Config.load(), root.get("context_name"), root.get("ca_file")
        )
        names = run_on(target, fetch, TIMEOUT)
    except Exception:  # completion must never break the shell
        return []
    return [CompletionItem(n) for n in sorted(set(names)) if n.startswith(incomplete)]


async def _instances(client: Client) -> list[str]:
    insts, systems = await asyncio.gather(client.instances(), client.systems())
    names = {s.id: s.name for s in systems}
    counts: dict[str, int] = {}
    for i in insts:
        counts[i.name] = counts.get(i.name, 0) + 1
    return [i.name if counts[i.name] == 1 else f"{names.get(i.system_id)}/{i.name}" for i in insts]


async def _systems(client: Client) -> list[str]:
    return [s.name for s in await client.systems()]


async def _nodes(client: Client) -> list[str]:
    return [n.hostname for n in await client.nodes()]


async def _modules(client: Client) -> list[str]:
    systems = await client.systems()
    details = await asyncio.gather(*(client.system(s.id) for s in systems))
    return [f"{s.name}/{m.name}" for s in details for m in s.modules]


def instances(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _names(ctx, _instances, incomplete)


def systems(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _names(ctx, _systems, incomplete)


def nodes(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _names(ctx, _nodes, incomplete)


def modules(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _names(ctx, _modules, incomplete)
