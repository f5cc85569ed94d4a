"""Watching a running process: its health probes, its exit event, and what the exit leads to.

An unexpected exit is handled here, without the master: the restart policy restarts the service
(at once the first time, after a backoff later: BACKOFF) or gives up (FAILED).
"""

import asyncio
import logging
import signal
import subprocess
from collections.abc import Awaitable, Callable

from agent.executor import launch, process, start
from agent.executor.health import HealthMonitor
from agent.executor.managed import Managed
from agent.executor.restart import Backoff
from agent.executor.states import ProcessState
from agent.executor.table import InstanceTable
from protocol.errors import GdosError
from protocol.expand import MissingVariable
from protocol.states import HealthState

log = logging.getLogger(__name__)

S = ProcessState
Restart = Callable[[Managed], Awaitable[None]]  # a start under the instance's lock held


class Watch:
    def __init__(self, table: InstanceTable, restart: Restart) -> None:
        self.table = table
        self.restart = restart

    def begin(self, m: Managed, popen: subprocess.Popen[bytes] | None) -> None:
        """Wait for `m`'s process to exit (`popen`: when it is the agent's child), and probe
        its health when it has a check."""
        ident = m.identity
        assert ident is not None
        m.watcher = asyncio.create_task(self._watch(m, ident, popen))
        check = launch.health_check(m.spec, m.manifest)
        if check is None:
            return
        account, refusal = None, None
        try:
            account = self.table.account(m.spec, m.manifest)
        except GdosError as exc:
            refusal = exc.message
        env = launch.service_env(m.spec, m.manifest, self.table.instance_dir(m.id), account)
        try:
            check = launch.expanded_health(check, env)
        except (MissingVariable, ValueError) as exc:
            # Checked at every start: only a process re-adopted under other settings gets here.
            self._health_changed(m, ident, HealthState.UNHEALTHY, f"not probed: {exc}")
            return
        ctx = launch.probe_context(m.spec, m.manifest, self.table.app_dir(m), account, refusal)
        m.monitor = HealthMonitor(check, ctx, lambda h, d: self._health_changed(m, ident, h, d))
        m.monitor.start()

    def _health_changed(
        self, m: Managed, ident: process.Identity, health: HealthState, detail: str | None
    ) -> None:
        if m.pid != ident.pid:
            return  # a late probe of a process that is gone
        m.health, m.health_detail = health, detail
        self.table.on_report(m.report())  # not persisted: health is re-probed after a restart

    def stop_monitor(self, m: Managed) -> None:
        if m.monitor is not None:
            m.monitor.stop()
            m.monitor = None
        m.health, m.health_detail = HealthState.UNKNOWN, None

    async def _watch(
        self, m: Managed, ident: process.Identity, popen: subprocess.Popen[bytes] | None
    ) -> None:
        code = await process.wait_exit(ident, popen)
        if m.pid != ident.pid:
            return  # superseded by a newer start
        started_at = m.started_at
        self.stop_monitor(m)
        m.forget_process()
        m.exit_code = code
        if m.state == S.STOPPING and m.stopping_saved is not None:
            m.change_state(S.STOPPED)
            # Reported before its own save, and saved with the other exits of its burst: once
            # `stopping` is written, an agent that dies before that save comes back to
            # "stopping, process gone", which it reads as stopped.
            await m.stopping_saved
            self.table.on_report(m.report())
            self.table.save_soon()
            return
        if m.state in (S.STOPPING, S.DESTROYING):
            if m.state == S.STOPPING:
                m.change_state(S.STOPPED)
            await self.table.commit(m, durable=False)
            return
        reason = exit_text(code)
        said = start.stderr_tail(self.table.instance_dir(m.id), started_at)
        await self.after_unexpected_exit(m, f"{reason}; stderr: {said}" if said else reason, code)

    async def after_unexpected_exit(self, m: Managed, reason: str, code: int | None) -> None:
        """Apply the restart policy: restart (now or after a backoff), or give up."""
        policy = launch.restart_policy(m.spec, m.manifest)
        if not policy.wants_restart(code):
            m.change_state(S.EXITED, error=reason)
            log.warning("%s exited on its own: %s", m.spec.name, reason)
            await self.table.commit(m, durable=False)
            return
        if m.backoff is None or m.backoff.policy != policy:
            m.backoff = Backoff(policy)
        delay = m.backoff.on_failure()
        if delay is None:
            m.change_state(
                S.FAILED,
                error=f"{reason}; gave up after {policy.limit} failures within "
                f"{policy.window:g} s (a manual start tries again)",
            )
            log.error("%s: %s", m.spec.name, m.error)
            await self.table.commit(m, durable=False)
            return
        m.change_state(
            S.BACKOFF, error=f"{reason}; restarting" + (f" in {delay:.1f} s" if delay else "")
        )
        log.warning("%s: %s", m.spec.name, m.error)
        self.restart_after(m, delay)
        if delay > 0:
            await self.table.commit(m, durable=False)
        # With no delay the restart saves once, right after its spawn: the state file still
        # says running, and a crash in between is recovered by the environment marker.

    def restart_after(self, m: Managed, delay: float) -> None:
        """Schedule the restart of an instance in BACKOFF."""
        m.restart_task = asyncio.create_task(self._restart_later(m, delay))

    async def _restart_later(self, m: Managed, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        async with m.lock:
            if m.state != S.BACKOFF:
                return  # a stop or a manual start came first
            m.restarts += 1
            try:
                await self.restart(m)
            except GdosError as exc:
                failure = exc.message
            else:
                return
        await self.after_unexpected_exit(m, failure, None)

    def cancel_restart(self, m: Managed) -> None:
        if m.state == S.BACKOFF:
            m.change_state(S.EXITED)  # nothing restarts it now
        task, m.restart_task = m.restart_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()


def exit_text(code: int | None) -> str:
    """How an exit reads to a person."""
    if code is None:
        return "the process ended (exit code unknown: it was not started by this agent run)"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
