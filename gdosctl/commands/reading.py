"""Reading: status, nodes, ps, alerts, audit, packages, systems."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from gdosctl import lookup, output
from gdosctl.errors import FAILED, CtlError
from gdosctl.output import Column
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client

STATES = (
    "deploying",
    "stopped",
    "starting",
    "running",
    "stopping",
    "exited",
    "failed",
    "unknown",
    "destroying",
)


@click.command()
@output.output_option
@pass_options
def status(opts: Options, fmt: str) -> None:
    """The overview: the master, nodes, instances by state, firing alerts, running operations.

    \b
    Example:
      gdosctl status
    """

    async def go(client: Client) -> dict[str, Any]:
        health, nodes, insts, systems, alerts, ops = await asyncio.gather(
            client.healthz(),
            client.nodes(),
            client.instances(),
            client.systems(),
            client.alerts(state="firing"),
            client.operations(state="running"),
        )
        by_state: dict[str, int] = {}
        for inst in insts:
            by_state[inst.state] = by_state.get(inst.state, 0) + 1
        return {
            "master": client.base_url,
            "version": health.get("version"),
            "nodes": {"total": len(nodes), "online": sum(n.status == "online" for n in nodes)},
            "systems": len(systems),
            "instances": {"total": len(insts), "by_state": by_state},
            "alerts_firing": len(alerts),
            "critical_firing": sum(a.severity == "critical" for a in alerts),
            "operations_running": [{"id": o.id, "kind": o.kind} for o in ops],
        }

    data = run(opts, go)
    if fmt != "table":
        output.dump(data, fmt)
        return
    states = ", ".join(f"{n} {s}" for s, n in sorted(data["instances"]["by_state"].items()))
    ops = ", ".join(f"{o['kind']} {o['id']}" for o in data["operations_running"]) or "none"
    output.details(
        [
            ("master", f"{data['master']} (GDOS {data['version']})"),
            ("nodes", f"{data['nodes']['online']} online of {data['nodes']['total']}"),
            ("systems", data["systems"]),
            ("instances", f"{data['instances']['total']}" + (f" ({states})" if states else "")),
            ("alerts", f"{data['alerts_firing']} firing ({data['critical_firing']} critical)"),
            ("operations", ops),
        ]
    )


@click.command()
@output.output_option
@pass_options
def nodes(opts: Options, fmt: str) -> None:
    """List nodes: hostname, status, address, load, agent version.

    \b
    Example:
      gdosctl nodes -o json | jq -r '.[] | select(.status=="offline") | .hostname'
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        return [n.model_dump() for n in await client.nodes()]

    rows = run(opts, go)
    for row in rows:
        row.update({f"load_{k}": v for k, v in (row.get("load") or {}).items()})
    output.emit(
        rows,
        [
            Column("hostname", "HOSTNAME"),
            Column("status", "STATUS", output.state),
            Column("ip", "IP"),
            Column("os", "OS"),
            Column("load_cpu_percent", "CPU", output.percent, right=True),
            Column("load_mem_percent", "MEM", output.percent, right=True),
            Column("agent_version", "AGENT"),
            Column("id", "ID"),
        ],
        fmt,
    )


async def instance_rows(
    client: Client,
    system: str | None = None,
    node: str | None = None,
    state: str | None = None,
) -> list[dict[str, Any]]:
    """Instances as `ps` shows them, with their system's name and node's hostname."""
    systems, node_list = await asyncio.gather(client.systems(), client.nodes())
    system_id = (await lookup.system(client, system)).id if system else None
    node_id = (await lookup.node(client, node, node_list)).id if node else None
    # As the master sends them: every field it has, also those newer than this client's model.
    params = {"system_id": system_id, "node_id": node_id, "state": state}
    rows: list[dict[str, Any]] = (await client.request("GET", "/instances", params=params)).json()
    system_names = {s.id: s.name for s in systems}
    hostnames = {n.id: n.hostname for n in node_list}
    for row in rows:
        up = output.age(row.get("started_at")) if row.get("state") == "running" else None
        row.update(
            system=system_names.get(row["system_id"], row["system_id"]),
            node=hostnames.get(row["node_id"], row["node_id"]),
            uptime_seconds=None if up is None else round(up, 1),
        )
    return rows


PS_COLUMNS = [
    Column("name", "NAME"),
    Column("system", "SYSTEM"),
    Column("node", "NODE"),
    Column("state", "STATE", output.state),
    Column("health", "HEALTH", output.state),
    Column("cpu_percent", "CPU", output.percent, right=True),
    Column("rss_bytes", "RSS", output.size, right=True),
    Column("uptime_seconds", "UPTIME", output.duration, right=True),
    Column("version", "VERSION"),
    Column("restarts", "RESTARTS", right=True),
    Column("id", "ID"),
]


@click.command()
@click.option("--system", "-s", metavar="SYSTEM", help="Only this system's instances.")
@click.option("--node", "-n", metavar="NODE", help="Only this node's instances.")
@click.option("--state", type=click.Choice(STATES), help="Only instances in this state.")
@output.output_option
@pass_options
def ps(opts: Options, system: str | None, node: str | None, state: str | None, fmt: str) -> None:
    """List instances: name, system, node, state, health, CPU, RSS, uptime, version, restarts.

    \b
    Examples:
      gdosctl ps
      gdosctl ps --system shop --state running -o json
    """
    rows = run(opts, lambda client: instance_rows(client, system, node, state))
    output.emit(rows, PS_COLUMNS, fmt)


@click.command()
@click.option("--state", type=click.Choice(["firing", "resolved"]), help="Only these alerts.")
@click.option("--limit", type=click.IntRange(1, 5000), default=100, show_default=True)
@output.output_option
@pass_options
def alerts(opts: Options, state: str | None, limit: int, fmt: str) -> None:
    """List alerts, newest first.

    \b
    Example:
      gdosctl alerts --state firing
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        return [a.model_dump() for a in await client.alerts(state=state, limit=limit)]

    output.emit(
        run(opts, go),
        [
            Column("rule_name", "RULE"),
            Column("severity", "SEVERITY"),
            Column("target_name", "TARGET"),
            Column("state", "STATE", output.state),
            Column("value", "VALUE"),
            Column("started_at", "STARTED", output.when),
            Column("acked", "ACKED", lambda v: "yes" if v else ""),
            Column("silenced", "SILENCED", lambda v: "yes" if v else ""),
            Column("id", "ID"),
        ],
        fmt,
    )


@click.group(invoke_without_command=True)
@click.option("--since", metavar="TIME", help="ISO 8601 time, e.g. 2026-11-27T10:00:00Z.")
@click.option("--actor", help="Only what this user (or node:<id>) did.")
@click.option("--action", help="Only this action, e.g. login or start_instance.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@output.output_option
@click.pass_context
def audit(
    ctx: click.Context,
    since: str | None,
    actor: str | None,
    action: str | None,
    limit: int,
    fmt: str,
) -> None:
    """List the audit trail (newest first); `gdosctl audit verify` checks its hash chain.

    \b
    Examples:
      gdosctl audit --actor admin --limit 20
      gdosctl audit verify
    """
    if ctx.invoked_subcommand is not None:
        return
    opts = ctx.find_object(Options)
    assert opts is not None

    async def go(client: Client) -> list[dict[str, Any]]:
        rows = await client.audit(since=since, actor=actor, action=action, limit=limit)
        return [r.model_dump() for r in rows]

    output.emit(
        run(opts, go),
        [
            Column("ts", "TIME", output.when),
            Column("actor", "ACTOR"),
            Column("action", "ACTION"),
            Column("target", "TARGET"),
            Column("result", "RESULT"),
            Column("source_ip", "FROM"),
        ],
        fmt,
    )


@audit.command("verify")
@output.output_option
@pass_options
def audit_verify(opts: Options, fmt: str) -> None:
    """Walk the audit trail's hash chain; exit 1 naming the first row edited, removed or added.

    \b
    Example:
      gdosctl audit verify
    """

    async def go(client: Client) -> dict[str, Any]:
        return await client.verify_audit()

    result = run(opts, go)
    if fmt != "table":
        output.dump(result, fmt)
    elif result.get("ok"):
        click.echo(f"the audit trail is intact: {result.get('count')} rows")
    if not result.get("ok"):
        broken = result.get("broken") or {}
        raise CtlError(
            f"the audit trail is broken at row {broken.get('id')}: {broken.get('reason')}", FAILED
        )


@click.command()
@click.argument("name", required=False)
@output.output_option
@pass_options
def packages(opts: Options, name: str | None, fmt: str) -> None:
    """List packages, newest upload first within a name (the first is what `version: null`
    deploys); with NAME, the versions of that package.

    \b
    Examples:
      gdosctl packages
      gdosctl packages payment-service -o json
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        return [p.model_dump(exclude={"manifest"}) for p in await client.packages(name=name)]

    output.emit(
        run(opts, go),
        [
            Column("name", "NAME"),
            Column("version", "VERSION"),
            Column("size", "SIZE", output.size, right=True),
            Column("os", "OS"),
            Column("uploaded_at", "UPLOADED", output.when),
            Column("id", "ID"),
        ],
        fmt,
    )


@click.command()
@output.output_option
@pass_options
def systems(opts: Options, fmt: str) -> None:
    """List systems.

    \b
    Example:
      gdosctl systems -o yaml
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        found = await client.systems()
        details = await asyncio.gather(*(client.system(s.id) for s in found))
        rows = []
        for s in details:
            row = s.model_dump(exclude={"modules", "instances"})
            row["modules"] = len(s.modules)
            row["instances"] = len(s.instances)
            row["running"] = sum(i.state == "running" for i in s.instances)
            rows.append(row)
        return rows

    output.emit(
        run(opts, go),
        [
            Column("name", "NAME"),
            Column("modules", "MODULES", right=True),
            Column("instances", "INSTANCES", right=True),
            Column("running", "RUNNING", right=True),
            Column("description", "DESCRIPTION"),
            Column("id", "ID"),
        ],
        fmt,
    )
