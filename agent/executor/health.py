"""Health checks from service.json `health`: a TCP port that accepts, an HTTP URL that answers
2xx, or a command that exits 0, each within `timeout`.

A monitor runs per running instance and reports only changes. Until the first success it probes
on a fast ramp (50 ms, doubling up to `interval`; a TCP or HTTP probe, cheap, at most 0.2 s apart)
so a readiness gate (a batch start, a rollout's batch) opens as soon as the service is ready; once
healthy it probes every `interval` and needs `failure_threshold` failures in a row before it says
unhealthy (one lost probe on a busy host is not an outage).
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agent import http
from agent.executor import process
from agent.executor.runas import Account
from protocol.frozen import child_environ
from protocol.manifest import HealthCheck, port_of
from protocol.states import HealthState

log = logging.getLogger(__name__)

FIRST_PROBE_DELAY = 0.05
STARTING_MAX_GAP = 0.2  # TCP and HTTP probes while a service starts (a command probe is a process)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


@dataclass(frozen=True)
class ProbeContext:
    """Where a command probe runs: the package root (for relative programs) and the env."""

    root: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    account: Account | None = None  # who command probes run as (None: the agent itself)
    refusal: str | None = None  # why command probes cannot run as the service's account


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    what = f"tcp {host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return ProbeResult(False, f"{what}: no answer within {timeout:g} s")
    except OSError as exc:
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        return ProbeResult(False, f"{what}: {why}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, f"{what}: accepting")


async def probe_http(url: str, timeout: float) -> ProbeResult:
    try:
        status = await http.probe_status(url, timeout)
    except http.HttpError as exc:
        if "timed out" in str(exc):
            return ProbeResult(False, f"GET {url}: no answer within {timeout:g} s")
        return ProbeResult(False, f"GET {url}: {exc}")
    if 200 <= status < 300:
        return ProbeResult(True, f"GET {url}: HTTP {status}")
    return ProbeResult(False, f"GET {url}: HTTP {status} (expected 2xx)")


def command_argv(argv: list[str], root: Path | None) -> list[str]:
    """A program named relative to the package (`bin/check`) runs from there; else from PATH."""
    if root is not None and not os.path.isabs(argv[0]) and (root / argv[0]).is_file():
        return [str(root / argv[0]), *argv[1:]]
    return list(argv)


async def probe_command(argv: list[str], ctx: ProbeContext, timeout: float) -> ProbeResult:
    full = command_argv(argv, ctx.root)
    what = " ".join(argv)
    if ctx.refusal is not None:
        return ProbeResult(False, f"{what}: not run: {ctx.refusal}")
    detach: dict[str, Any] = dict(process.popen_options(process.IS_WINDOWS)[-1])
    if ctx.account is not None:
        detach.update(ctx.account.popen_options())  # as the service's own account
    try:
        proc = await asyncio.create_subprocess_exec(
            *full,
            cwd=ctx.root,
            env={**child_environ(), **ctx.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            **detach,  # its own group, so a hung probe is killed as a tree
        )
    except OSError as exc:
        return ProbeResult(False, f"{what}: cannot run: {exc.strerror or exc}")
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc.pid)  # the probe and whatever it started (they hold its pipes)
        await proc.wait()
        return ProbeResult(False, f"{what}: still running after {timeout:g} s")
    if proc.returncode == 0:
        return ProbeResult(True, f"{what}: exit 0")
    tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
    more = f": {tail[0][:200]}" if tail else ""
    return ProbeResult(False, f"{what}: exit {proc.returncode}{more}")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        process.kill_tree(process.tree(psutil.Process(pid)))


async def probe(check: HealthCheck, ctx: ProbeContext) -> ProbeResult:
    if check.tcp is not None:
        try:
            port = port_of(check.tcp)  # a "${PORT}" is expanded before the monitor begins
        except ValueError as exc:
            return ProbeResult(False, str(exc))
        return await probe_tcp(check.host, port, check.timeout)
    if check.http is not None:
        return await probe_http(check.http, check.timeout)
    assert check.command is not None
    return await probe_command(check.command, ctx, check.timeout)


OnChange = Callable[[HealthState, str | None], None]


class HealthMonitor:
    """Probes one instance until stopped and calls `on_change(state, detail)` on every change."""

    def __init__(self, check: HealthCheck, ctx: ProbeContext, on_change: OnChange) -> None:
        self.check = check
        self.ctx = ctx
        self.on_change = on_change
        self.state = HealthState.UNKNOWN
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        check = self.check
        delay = FIRST_PROBE_DELAY
        ramp_cap = check.interval if check.command else min(check.interval, STARTING_MAX_GAP)
        failures = 0
        ever_healthy = False
        while True:
            try:
                result = await probe(check, self.ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe bug must not end monitoring silently
                log.exception("health probe failed unexpectedly")
                result = ProbeResult(False, f"probe error: {exc}")
            if result.ok:
                failures, ever_healthy = 0, True
                new = HealthState.HEALTHY
            else:
                failures += 1
                starting = not ever_healthy
                new = (
                    HealthState.UNHEALTHY
                    if starting or failures >= check.failure_threshold
                    else self.state
                )
            if new != self.state:
                self.state = new
                self.on_change(new, None if result.ok else result.detail)
            delay = check.interval if ever_healthy else min(ramp_cap, delay * 2)
            await asyncio.sleep(delay)
