"""Waiting for long actions with live progress: instances until they reach a state, operations
until they end, followed on the event stream (a poll every few seconds is the safety net).

On a terminal the progress is drawn in place (rich); elsewhere each change is one plain line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from gdosctl import output
from gdosctl.errors import FAILED, CtlError

if TYPE_CHECKING:
    from console.client import Client, EventStream

POLL = 2.0  # seconds between polls while events say nothing
CONNECT_TIMEOUT = 5.0


class Events:
    """The event stream while a command waits: the newest `instance` and `operation` data by id."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.latest: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self._connected = asyncio.Event()
        self._stream: EventStream | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Events:
        from console.client import EventStream

        self._stream = EventStream(self.client, self._on_event, self._on_status)
        self._task = asyncio.create_task(self._stream.run())
        with contextlib.suppress(TimeoutError):  # no stream (a proxy): polls carry the wait
            await asyncio.wait_for(self._connected.wait(), CONNECT_TIMEOUT)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._stream is not None:
            self._stream.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_status(self, up: bool, _: str) -> None:
        if up:
            self._connected.set()

    def _on_event(self, topic: str, data: dict[str, Any]) -> None:
        if topic in ("instance", "operation") and isinstance(data.get("id"), str):
            self.latest[data["id"]] = data
            self.changed.set()

    async def next_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()


class Display:
    """Lines that change in place on a terminal; elsewhere a line per change."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: dict[str, str] = {}
        self.header = ""
        self.live: Any = None
        if output.progress_on_terminal():
            from rich.live import Live

            self.live = Live(self._render(), console=output.console(stderr=True), transient=False)
            self.live.start()
        else:
            click.echo(title, err=True)

    def set(self, key: str, text: str, header: str = "") -> None:
        changed = self.rows.get(key) != text
        if not changed and header in ("", self.header):
            return
        self.rows[key], self.header = text, header or self.header
        if self.live is not None:
            self.live.update(self._render())
        elif changed:
            click.echo(f"  {key}: {text}", err=True)

    def _render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        table.add_row(Text(self.title + (f"  {self.header}" if self.header else ""), "bold"))
        for key, text in self.rows.items():
            table.add_row(f"  {key}: {text}")
        return table

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


# -- instances ---------------------------------------------------------------------------------

Goal = Callable[[dict[str, Any]], str | None]  # "done", "failed" or None (not yet)


@dataclass
class InstanceWait:
    ids: dict[str, str]  # id -> name
    goal: Goal
    outcome: dict[str, str] = field(default_factory=dict)


def reached(*states: str) -> Goal:
    """Done in one of `states`; failed when it ends `exited` or `failed` instead."""

    def goal(inst: dict[str, Any]) -> str | None:
        state = inst.get("state")
        if state in states:
            return "done"
        if state in ("exited", "failed"):
            return "failed"
        return None

    return goal


def restarted(started_before: dict[str, str | None]) -> Goal:
    def goal(inst: dict[str, Any]) -> str | None:
        if inst.get("state") in ("exited", "failed"):
            return "failed"
        fresh = inst.get("started_at") != started_before.get(str(inst.get("id")))
        return "done" if inst.get("state") == "running" and fresh else None

    return goal


def gone(inst: dict[str, Any]) -> str | None:
    if inst.get("deleted"):
        return "done"
    return "failed" if inst.get("state") == "failed" else None


async def instances(
    client: Client, events: Events, wait: InstanceWait, what: str, timeout: float
) -> None:
    """Until every instance reaches its goal; CtlError (exit 1) when one fails or time runs out."""
    from console.client import ClientError

    display = Display(what)
    deadline = time.monotonic() + timeout
    last_poll = 0.0
    try:
        while len(wait.outcome) < len(wait.ids):
            now = time.monotonic()
            polled = now - last_poll >= POLL
            for iid, name in wait.ids.items():
                if iid in wait.outcome:
                    continue
                data = events.latest.get(iid)
                if polled or data is None:
                    try:
                        data = (await client.instance(iid)).model_dump()
                    except ClientError as exc:
                        if exc.status != 404:
                            raise
                        data = {"id": iid, "deleted": True}
                    events.latest.setdefault(iid, data)
                verdict = wait.goal(data)
                display.set(name, _instance_text(data, verdict))
                if verdict is not None:
                    wait.outcome[iid] = verdict
                    if verdict == "failed":
                        wait.outcome[iid] = f"failed: {data.get('last_error') or data.get('state')}"
            if polled:
                last_poll = now
            if len(wait.outcome) == len(wait.ids):
                break
            if now > deadline:
                raise CtlError(f"timed out after {timeout:g} s waiting for {what}", FAILED)
            await events.next_change(POLL)
    finally:
        display.close()
    failed = {wait.ids[i]: o for i, o in wait.outcome.items() if o != "done"}
    if failed:
        raise CtlError("; ".join(f"{n} {o}" for n, o in failed.items()), FAILED)


def _instance_text(data: dict[str, Any], verdict: str | None) -> str:
    if data.get("deleted"):
        return "destroyed"
    text = str(data.get("state") or "?")
    if data.get("health") not in (None, "unknown") and text == "running":
        text += f" ({data['health']})"
    if verdict == "failed" and data.get("last_error"):
        text += f": {data['last_error']}"
    return text


# -- operations --------------------------------------------------------------------------------


async def operation(
    client: Client, events: Events, op: dict[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """Until the operation ends (or pauses, as a canary does); CtlError when it failed."""
    op_id = str(op.get("operation_id") or op["id"])
    display = Display(f"{op.get('kind', 'operation')} {op_id}")
    deadline = None if timeout is None else time.monotonic() + timeout
    last_poll = time.monotonic()
    current = op
    try:
        while True:
            current = events.latest.get(op_id, current)
            _show_operation(display, current)
            if current.get("state") != "running" or current.get("paused"):
                break
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise CtlError(f"timed out after {timeout:g} s; the operation goes on", FAILED)
            await events.next_change(POLL)
            if op_id not in events.latest or time.monotonic() - last_poll >= POLL:
                fresh = await client.operation_data(op_id)
                last_poll = time.monotonic()
                if events.latest.get(op_id, {}).get("state") == "running":
                    events.latest[op_id] = fresh
                current = fresh
    finally:
        display.close()
    if current.get("paused"):
        click.echo(
            f"paused after its canary: `gdosctl operations resume {op_id}` goes on, "
            f"`gdosctl operations cancel {op_id}` rolls back",
            err=True,
        )
    elif current.get("state") == "failed":
        raise CtlError(f"{current.get('kind', 'operation')} failed: {current.get('error')}", FAILED)
    return current


def _show_operation(display: Display, op: dict[str, Any]) -> None:
    steps = [s for s in op.get("steps") or [] if isinstance(s, dict)]
    done = sum(1 for s in steps if s.get("state") in ("done", "skipped", "rolled_back"))
    header = f"{op.get('state')} [{done}/{len(steps)}]"
    if not steps:
        display.set("-", str(op.get("state")), header)
    for step in steps:
        text = str(step.get("state"))
        if step.get("error"):
            text += f": {step['error']}"
        display.set(f"{step.get('name')} (level {step.get('level')})", text, header)
