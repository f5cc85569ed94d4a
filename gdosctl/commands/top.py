"""top: the instance table, live (as `pm2 monit`): states from the event stream, CPU and memory
from the instances' metrics streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import click

from gdosctl import output
from gdosctl.commands.reading import instance_rows
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client

MAX_LIVE = 200  # instances followed through their metrics stream (the master takes 256 keys)
REFRESH_EVERY = 10.0  # seconds between full reloads of the list


class Board:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {r["id"]: r for r in rows}
        self.dirty = asyncio.Event()

    def on_event(self, topic: str, data: dict[str, Any]) -> None:
        row = self.rows.get(str(data.get("id")))
        if row is None:
            return
        if topic == "metrics" and data.get("kind") == "instance":
            row["cpu_percent"] = data.get("cpu_percent")
            row["rss_bytes"] = data.get("rss_bytes")
        elif topic == "instance":
            if data.get("deleted"):
                self.rows.pop(row["id"], None)
            else:
                for key in ("state", "health", "version", "restarts", "started_at"):
                    if key in data:
                        row[key] = data[key]
        else:
            return
        self.dirty.set()

    def table(self, system: str | None) -> Any:
        from rich.table import Table

        rows = sorted(self.rows.values(), key=lambda r: (-(r.get("cpu_percent") or 0.0), r["name"]))
        title = f"gdosctl top — {len(rows)} instances" + (f" of {system}" if system else "")
        table = Table(
            title=title, title_justify="left", box=None, header_style="bold", expand=False
        )
        for col in (
            "NAME",
            "SYSTEM",
            "NODE",
            "STATE",
            "HEALTH",
            "CPU",
            "RSS",
            "UPTIME",
            "VERSION",
            "RESTARTS",
        ):
            table.add_column(
                col, justify="right" if col in ("CPU", "RSS", "UPTIME", "RESTARTS") else "left"
            )
        for r in rows:
            up = output.age(r.get("started_at")) if r.get("state") == "running" else None
            table.add_row(
                r["name"],
                str(r.get("system")),
                str(r.get("node")),
                output.state(r.get("state")),
                output.state(r.get("health")),
                output.percent(r.get("cpu_percent")),
                output.size(r.get("rss_bytes")),
                output.duration(up),
                str(r.get("version") or "-"),
                str(r.get("restarts")),
            )
        return table


@click.command()
@click.option("--system", "-s", metavar="SYSTEM", help="Only this system's instances.")
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between redraws."
)
@click.option(
    "--iterations", "-n", type=click.IntRange(1), help="Draw N times, then exit (like top -n)."
)
@pass_options
def top(opts: Options, system: str | None, interval: float, iterations: int | None) -> None:
    """A live instance table, busiest first: states from the event stream, CPU and memory as
    the agents sample them. Ctrl-C ends it.

    \b
    Examples:
      gdosctl top
      gdosctl top --system shop -n 3 > snapshot.txt
    """

    async def go(client: Client) -> None:
        from console.client import EventStream

        board = Board(await instance_rows(client, system))
        stream = EventStream(client, board.on_event)
        stream.keys.update(f"metrics:{i}" for i in list(board.rows)[:MAX_LIVE])
        runner = asyncio.create_task(stream.run())
        live = None
        if output.is_terminal():
            from rich.live import Live

            live = Live(board.table(system), console=output.console(), screen=iterations is None)
            live.start()
        drawn = 0
        loaded = time.monotonic()
        try:
            while iterations is None or drawn < iterations:
                if drawn:
                    await asyncio.sleep(interval)
                if time.monotonic() - loaded > REFRESH_EVERY:  # new instances, figures of the rest
                    fresh = Board(await instance_rows(client, system))
                    for iid, row in fresh.rows.items():
                        kept = board.rows.get(iid, {})
                        row.update({k: kept[k] for k in ("cpu_percent", "rss_bytes") if k in kept})
                    board.rows, loaded = fresh.rows, time.monotonic()
                    await stream.subscribe(f"metrics:{i}" for i in list(board.rows)[:MAX_LIVE])
                if live is not None:
                    live.update(board.table(system))
                else:
                    output.print_renderable(board.table(system))
                    click.echo()
                drawn += 1
        finally:
            if live is not None:
                live.stop()
            stream.stop()
            await asyncio.gather(runner, return_exceptions=True)

    with contextlib.suppress(KeyboardInterrupt):
        run(opts, go)
