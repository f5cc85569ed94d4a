"""Bringing a process tree down: the stop command (run as the service) or SIGTERM to the tree,
a wait for the leader's exit event, then SIGKILL for whatever is left.

The state changes around a stop are the supervisor's; this is the work on the host.
"""

import asyncio
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil

from agent.executor import launch, process, runas
from agent.executor.managed import Managed
from protocol.errors import GdosError

log = logging.getLogger(__name__)

KILL_WAIT = 5.0  # how long SIGKILL may take to end a tree


class TermBurst:
    """The SIGTERMs of the stops decided in one turn of the event loop, sent back to back at
    its end (a batch stop's instances are decided in one turn).

    Signalled as each stop is decided, a woken program took the CPU from the agent within a
    millisecond or so (the scheduler favours a program that slept, and each service is a
    scheduling group of its own), and the agent's later signals waited out the exits of the
    first: tens of milliseconds each on a busy host, the last of ten signals up to 300 ms after
    the first. Sent together they leave within a few microseconds of each other."""

    def __init__(self) -> None:
        self._queued: list[tuple[list[psutil.Process], asyncio.Future[None]]] = []

    def terminate(self, procs: list[psutil.Process]) -> asyncio.Future[None]:
        """Queue `procs` (read in this turn, with no wait since); done once signalled. Each
        stop waits on a future of its own: one cancelled leaves the others' alone."""
        loop = asyncio.get_running_loop()
        if not self._queued:
            loop.call_soon(self._send)
        sent = loop.create_future()
        self._queued.append((procs, sent))
        return sent

    def _send(self) -> None:
        queued, self._queued = self._queued, []
        try:
            # Read in the turn just before, with no wait since: still `fresh` (an own child's
            # PID cannot be reused before this loop reaps it, which comes after this callback).
            process.terminate_trees([procs for procs, _ in queued], fresh=True)
        except Exception as exc:  # every stop of the burst hears it, as from its own call
            for _, sent in queued:
                if not sent.done():
                    sent.set_exception(exc)
        else:
            for _, sent in queued:
                if not sent.done():
                    sent.set_result(None)


async def request_stop(
    m: Managed,
    procs: list[psutil.Process],
    folders: Callable[[], tuple[Path, Path | None]],
    account: Callable[[], runas.Account],
    timeout: float,
    burst: TermBurst,
) -> None:
    """The instance's stop command when it has one, else SIGTERM to its tree (with the other
    stops of this turn, through `burst`). `folders`: the instance's folder and its current
    release's, asked only for a stop command."""
    plan = None
    if launch.has_stop_command(m.spec, m.manifest):
        instance_dir, app = folders()
        plan = launch.stop_plan(m.spec, m.manifest, instance_dir, app)
    if plan is None:
        await burst.terminate(procs)  # `procs` were read just before the call
    else:
        await _run_stop_command(m, plan, instance_dir, account, timeout)


async def wait_stopped(
    watcher: asyncio.Task[None] | None, procs: list[psutil.Process], timeout: float
) -> list[psutil.Process]:
    """The leader's exit is an event (its watcher); the rest of the tree is checked after.
    Returns the processes still alive at `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if watcher is not None and not watcher.done():
        await asyncio.wait({watcher}, timeout=timeout)
    if watcher is not None and watcher.done() and _watched_to_the_end(watcher):
        procs = procs[1:]  # the leader: its watcher saw it end
    return await process.wait_gone(procs, max(0.0, deadline - loop.time()))


def _watched_to_the_end(watcher: asyncio.Task[None]) -> bool:
    """A watcher that ended without an error or a cancel saw its process end."""
    return not watcher.cancelled() and watcher.exception() is None


async def kill_left(left: list[psutil.Process], name: str, timeout: float) -> list[psutil.Process]:
    """SIGKILL what outlived the polite request; returns what outlives even that."""
    if not left:
        return []
    log.warning("%s did not stop within %.0f s: killing", name, timeout)
    process.kill_tree(left)
    return await process.wait_gone(left, KILL_WAIT)


async def _run_stop_command(
    m: Managed,
    plan: launch.Plan,
    instance_dir: Path,
    account: Callable[[], runas.Account],
    timeout: float,
) -> None:
    """Run the stop command for at most `timeout`; one that cannot run falls back to SIGTERM."""
    try:
        run_as = account()  # the stop command runs as the service
        plan = launch.with_account(plan, run_as, instance_dir, not m.adopted)
        proc = await asyncio.create_subprocess_exec(
            *plan.argv,
            cwd=plan.cwd,
            env=plan.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as.popen_options(),
        )
    except (GdosError, OSError) as exc:
        how = "not run" if isinstance(exc, GdosError) else "failed to start"
        log.warning("stop command of %s %s: %s; sending SIGTERM", m.spec.name, how, exc)
        if m.identity and (p := process.find(m.identity)):
            process.terminate_tree(process.tree(p))
        return
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
