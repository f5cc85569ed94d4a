"""Fetch what a command names and resolve it (gdosctl.resolve) with as few calls as it takes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gdosctl.resolve import Named, pick

if TYPE_CHECKING:
    from console.client import Client
    from protocol.rest import InstanceOut, ModuleOut, NodeOut, SystemOut


async def system(client: Client, query: str) -> SystemOut:
    systems = await client.systems()
    chosen = pick("system", query, [Named(s.id, s.name) for s in systems])
    return next(s for s in systems if s.id == chosen.id)


async def node(client: Client, query: str, nodes: list[NodeOut] | None = None) -> NodeOut:
    nodes = nodes if nodes is not None else await client.nodes()
    chosen = pick("node", query, [Named(n.id, n.hostname) for n in nodes])
    return next(n for n in nodes if n.id == chosen.id)


async def instance(client: Client, query: str) -> InstanceOut:
    """By name (one call when the name is unique), `SYSTEM/NAME`, or id prefix."""
    if "/" not in query:
        same_name = await client.instances(name=query)
        if len(same_name) == 1:
            return same_name[0]
    instances, systems = await asyncio.gather(client.instances(), client.systems())
    names = {s.id: s.name for s in systems}
    chosen = pick(
        "instance", query, [Named(i.id, i.name, names.get(i.system_id, "")) for i in instances]
    )
    return next(i for i in instances if i.id == chosen.id)


async def instances(client: Client, queries: list[str]) -> list[InstanceOut]:
    return list(await asyncio.gather(*(instance(client, q) for q in queries)))


async def module(client: Client, query: str) -> tuple[ModuleOut, SystemOut]:
    """`SYSTEM/MODULE`, a module name unique across systems, or a module id prefix."""
    systems = await client.systems()
    details = await asyncio.gather(*(client.system(s.id) for s in systems))
    mods = [(m, s) for s in details for m in s.modules]
    chosen = pick("module", query, [Named(m.id, m.name, s.name) for m, s in mods])
    found = next((m, s) for m, s in mods if m.id == chosen.id)
    return found[0], next(s for s in systems if s.id == found[1].id)
