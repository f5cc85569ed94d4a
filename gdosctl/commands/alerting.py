"""alert ack|rules|silence."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from gdosctl import output
from gdosctl.errors import USAGE, CtlError
from gdosctl.output import Column
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client


def seconds(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise CtlError(f"{text!r} is not a duration (90s, 15m, 2h, 1d)", USAGE)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@click.group()
def alert() -> None:
    """Alerts: acknowledge one, list the rules, silence some for a while.

    \b
    Examples:
      gdosctl alert ack 3f9a
      gdosctl alert silence --rule node-offline --for 2h --comment "rack move"
    """


@alert.command("ack")
@click.argument("alert_id")
@pass_options
def alert_ack(opts: Options, alert_id: str) -> None:
    """Acknowledge an alert (by id or id prefix): recorded once, it keeps firing until it resolves.

    \b
    Example:
      gdosctl alert ack 3f9a
    """

    async def go(client: Client) -> dict[str, Any]:
        from gdosctl.resolve import Named, pick

        found = await client.alerts(limit=5000)
        chosen = pick("alert", alert_id, [Named(a.id, a.id) for a in found])
        return (await client.ack_alert(chosen.id)).model_dump()

    acked = run(opts, go)
    click.echo(
        f"alert {acked['id']} ({acked.get('rule_name')}) acknowledged by {acked.get('acked_by')}"
    )


@alert.command("rules")
@output.output_option
@pass_options
def alert_rules(opts: Options, fmt: str) -> None:
    """List alert rules.

    \b
    Example:
      gdosctl alert rules -o yaml
    """

    async def go(client: Client) -> list[dict[str, Any]]:
        return [r.model_dump() for r in await client.alert_rules()]

    output.emit(
        run(opts, go),
        [
            Column("name", "NAME"),
            Column("metric", "METRIC"),
            Column("op", "OP"),
            Column("threshold", "THRESHOLD"),
            Column("for_seconds", "FOR", output.duration, right=True),
            Column("severity", "SEVERITY"),
            Column("enabled", "ENABLED", lambda v: "yes" if v else "no"),
            Column("id", "ID"),
        ],
        fmt,
    )


@alert.command("silence")
@click.option("--rule", "rule_id", help="Rule id (e.g. node-offline).")
@click.option("--severity", type=click.Choice(["warning", "critical"]))
@click.option("--metric", help="cpu_percent, rss_bytes, state or node_status.")
@click.option("--system-id", help="A system's id.")
@click.option("--node-id", help="A node's id (its instances too).")
@click.option("--instance-id", help="An instance's id.")
@click.option(
    "--for", "duration", default="1h", show_default=True, help="How long: 90s, 15m, 2h, 1d."
)
@click.option("--comment", default="", help="Why.")
@pass_options
def alert_silence(
    opts: Options,
    rule_id: str | None,
    severity: str | None,
    metric: str | None,
    system_id: str | None,
    node_id: str | None,
    instance_id: str | None,
    duration: str,
    comment: str,
) -> None:
    """Silence matching alerts for a while: recorded and shown, but no webhook is sent.

    \b
    Example:
      gdosctl alert silence --node-id 3f9a1c2b4d5e --for 30m --comment "kernel update"
    """
    matcher = {
        k: v
        for k, v in {
            "rule_id": rule_id,
            "severity": severity,
            "metric": metric,
            "system_id": system_id,
            "node_id": node_id,
            "instance_id": instance_id,
        }.items()
        if v
    }
    if not matcher:
        raise CtlError("say what to silence: --rule, --severity, --metric or an id", USAGE)
    body = {"matcher": matcher, "duration_seconds": seconds(duration), "comment": comment}

    async def go(client: Client) -> dict[str, Any]:
        return (await client.create_silence(body)).model_dump()

    made = run(opts, go)
    click.echo(f"silence {made['id']} until {output.when(made['ends_at'])} UTC")
