"""How results reach the user: tables for people, `-o json|yaml` with stable field names for
scripts. Colour only on a terminal, never with NO_COLOR."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("table", "json", "yaml")


def output_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """`-o/--output table|json|yaml` on a command."""
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; json or yaml for scripts (stable field names)",
    )(f)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    show: Callable[[Any], str] | None = None  # how a value reads in a table (default: str)
    right: bool = False  # numbers


def is_terminal() -> bool:
    return sys.stdout.isatty()


def progress_on_terminal() -> bool:
    """Progress goes to stderr (stdout carries results, e.g. JSON): drawn when that is a terminal."""
    return sys.stderr.isatty()


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Width: a terminal's own; a pipe gets whole lines (rich would wrap at 80 columns).
    return Console(
        stderr=stderr,
        highlight=False,
        width=None if (sys.stderr if stderr else sys.stdout).isatty() else 10_000,
        no_color="NO_COLOR" in os.environ or None,
    )


def dump(data: Any, fmt: str) -> None:
    """Data as JSON or YAML on stdout."""
    if fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str) -> None:
    """Rows as a table (the given columns) or, for scripts, whole as JSON or YAML."""
    if fmt != "table":
        dump(list(rows), fmt)
        return
    if not rows:
        click.echo("(none)", err=True)
        return
    colour = is_terminal() and "NO_COLOR" not in os.environ
    click.echo(table(rows, columns, colour), color=colour)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], colour: bool = False) -> str:
    """Aligned columns, as text. Not a rich Table: laying one out is linear in cells but slow
    enough that `ps` of a thousand instances would take seconds."""
    cells = [[_plain(row.get(col.key), col) for col in columns] for row in rows]
    widths = [
        max(len(col.header), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)
    ]

    def line(texts: Sequence[str], header: bool = False) -> str:
        out = []
        for text, col, width in zip(texts, columns, widths, strict=True):
            padded = text.rjust(width) if col.right else text.ljust(width)
            style = _style(text, col) if colour and not header else None
            if colour and header:
                padded = click.style(padded, bold=True)
            elif style:
                padded = click.style(padded, fg=style)
            out.append(padded)
        return "  ".join(out).rstrip()

    return "\n".join([line([c.header for c in columns], header=True), *map(line, cells)])


def print_renderable(thing: Any) -> None:
    if is_terminal():
        console().print(thing)
        return
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=10_000, highlight=False, color_system=None).print(thing)
    click.echo("\n".join(line.rstrip() for line in buf.getvalue().splitlines()))


def details(pairs: Sequence[tuple[str, Any]]) -> None:
    """`key: value` lines for one object."""
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key + ':':<{width + 1}} {'' if value is None else value}")


def _plain(value: Any, col: Column) -> str:
    if col.show is state:
        return "-" if value is None else str(value)
    if col.show is not None:
        return col.show(value)
    return "-" if value is None else str(value)


def _style(text: str, col: Column) -> str | None:
    return STATE_STYLE.get(text) if col.show is state else None


# -- how values read ------------------------------------------------------------------------


def size(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


def percent(n: Any) -> str:
    return "-" if not isinstance(n, int | float) else f"{n:.1f}%"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def age(iso: Any, now: float | None = None) -> float | None:
    """Seconds since an ISO 8601 time, or None."""
    if not isinstance(iso, str) or not iso:
        return None
    import time

    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return (time.time() if now is None else now) - then


def when(iso: Any) -> str:
    """An ISO time as `2026-11-27 10:00:00` (UTC), for tables."""
    if not isinstance(iso, str) or not iso:
        return "-"
    return iso.replace("T", " ")[:19]


STATE_STYLE = {
    "running": "green",
    "healthy": "green",
    "online": "green",
    "succeeded": "green",
    "done": "green",
    "firing": "red",
    "failed": "red",
    "exited": "red",
    "unhealthy": "red",
    "offline": "red",
    "unknown": "yellow",
    "starting": "yellow",
    "stopping": "yellow",
    "deploying": "yellow",
    "destroying": "yellow",
}


def state(value: Any) -> str:
    """A state word, coloured on a terminal."""
    if value is None:
        return "-"
    word = str(value)
    style = STATE_STYLE.get(word)
    return f"[{style}]{word}[/]" if style else word
