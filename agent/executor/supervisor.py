"""The agent's instance table: each instance's state machine, persisted, reported, re-adopted.

Commands on one instance run one at a time (a lock per instance); different instances run
concurrently. Every change is saved before it is reported, so what the master hears is what
the agent will remember after a crash. An unexpected exit is handled here, on the exit event,
without the master: the restart policy restarts the service (at once the first time, with
backoff after that) or gives up (`failed`).
"""

import asyncio
import errno
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from agent import logs
from agent.executor import deploy, launch, locate, process, runas
from agent.executor.health import HealthMonitor
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.managed import Managed
from agent.executor.restart import Backoff
from agent.flags import DEFAULT_LOG_ROOTS
from agent.hostinfo import os_name
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import InstanceReport, InstanceSpec, PackageRef
from protocol.states import ACTIVE_STATES, BUSY_STATES, HealthState, InstanceState

log = logging.getLogger(__name__)

__all__ = ["ENV_INSTANCE_ID", "Managed", "Supervisor"]

Fetch = Callable[[PackageRef, Path], Awaitable[None]]
Report = Callable[[InstanceReport], None]


class Supervisor:
    def __init__(
        self,
        work_dir: Path,
        state: StateFile,
        fetch: Fetch,
        report: Report,
        *,
        default_user: str | None = None,
        log_roots: tuple[Path, ...] = DEFAULT_LOG_ROOTS,
    ) -> None:
        self.work_dir = work_dir
        self.default_user = default_user  # None: the agent's own user (--default-user)
        self.log_roots = log_roots  # where absolute log_paths may point (--log-roots)
        self.state = state
        self.fetch = fetch
        self.on_report = report
        self.instances: dict[str, Managed] = {}
        state.collect = lambda: {i: m.record() for i, m in self.instances.items()}
        self._background: set[asyncio.Task[Any]] = set()

    # -- persistence and reporting -----------------------------------------------------------

    def instance_dir(self, instance_id: str) -> Path:
        return self.work_dir / instance_id

    async def _commit(self, m: Managed | None = None, durable: bool = True) -> None:
        """Save the table, then tell the master about `m`. Changes of a process's state need
        not be `durable` (see StateFile.save); what is deployed here must be.

        A save that fails (a full disk) raises a storage error that says so, and `m` is
        reported anyway: the change has happened (a process runs), only not on disk yet; the
        next save that succeeds writes the whole table, this change included."""
        try:
            await self.state.save(durable)
        except OSError as exc:
            if m is not None:
                self.on_report(m.report())
            raise self._not_saved(
                exc, "; the change is kept in memory and saved with the next save that succeeds"
            ) from exc
        if m is not None:
            self.on_report(m.report())

    def _not_saved(self, exc: OSError, then: str = "") -> GdosError:
        full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        return GdosError(
            ErrorCode.STORAGE_FULL if full else ErrorCode.STORAGE_ERROR,
            f"the agent could not save its state in {self.work_dir}: {exc.strerror or exc}{then}",
        )

    def reports(self) -> list[InstanceReport]:
        return [m.report() for m in self.instances.values()]

    def get(self, instance_id: str) -> Managed:
        m = self.instances.get(instance_id)
        if m is None:
            raise GdosError(ErrorCode.NOT_FOUND, f"this node has no instance {instance_id}")
        return m

    def _spawn_bg(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def account(self, spec: InstanceSpec, manifest: Manifest | None) -> runas.Account:
        """Who the instance's processes run as; GdosError when that account cannot be used."""
        user, group = runas.wanted(spec, manifest)
        return runas.resolve(user, group, self.default_user)

    def _managed_pids(self) -> set[int]:
        return {m.pid for m in self.instances.values() if m.pid is not None}

    # -- start-up: re-adopt what survived the agent -------------------------------------------

    async def load(self) -> None:
        markers: dict[str, psutil.Process] | None = None
        ended: list[Managed] = []
        for instance_id, record in self.state.instances.items():
            try:
                m = Managed.from_record(record)
            except (KeyError, ValueError) as exc:
                log.error("state of instance %s is unreadable (%s); ignoring it", instance_id, exc)
                continue
            if m.state == InstanceState.DEPLOYING:
                # Interrupted deploy: forget it; the master sees it missing and deploys again.
                shutil.rmtree(self.instance_dir(m.id), ignore_errors=True)
                continue
            self.instances[m.id] = m
            ident = m.identity
            proc = process.find(ident) if ident else None
            if proc is None and not m.adopted:
                if markers is None:
                    markers = _processes_by_marker()  # one scan for all instances
                proc = markers.get(m.id)  # spawned just before the last agent died
                if proc is not None and m.cmdline is not None:
                    m.cmdline = _cmdline(proc)
            if self._readopt(m, proc):
                ended.append(m)
        try:
            await self.state.save()
        except OSError as exc:  # the agent cannot run like this: it stops (see __main__)
            raise self._not_saved(exc) from exc
        for m in ended:
            if m.restart_pending:  # it was waiting out a backoff when the agent stopped
                m.restart_task = asyncio.create_task(self._restart_later(m, 0.0))
            else:  # it ended while nobody watched: the restart policy still applies
                await self._after_unexpected_exit(m, m.error or "the process ended", None)

    def _readopt(self, m: Managed, proc: psutil.Process | None) -> bool:
        """Take up where the last agent left; True when the restart policy has a say."""
        policy = launch.restart_policy(m.spec, m.manifest)
        if proc is not None and m.state != InstanceState.DESTROYING:
            m.pid, m.create_time = proc.pid, proc.create_time()
            m.state = InstanceState.RUNNING
            log.info("re-adopted %s (pid %d)", m.spec.name, m.pid)
            self._watch_process(m, None)
        elif m.state in ACTIVE_STATES:
            was_stopping = m.state == InstanceState.STOPPING
            m.state = InstanceState.STOPPED if was_stopping else InstanceState.EXITED
            m.pid = m.create_time = None
            m.cmdline = None
            if not was_stopping:
                m.error = "the process ended while the agent was not running"
                return policy.wants_restart(None)
        elif m.state == InstanceState.DESTROYING:
            m.state = InstanceState.STOPPED  # the master re-sends the destroy
        elif m.state == InstanceState.EXITED and m.restart_pending:
            return True  # a restart was waiting out its backoff
        return False

    # -- watching a running process -------------------------------------------------------------

    def _watch_process(self, m: Managed, popen: subprocess.Popen[bytes] | None) -> None:
        ident = m.identity
        assert ident is not None
        m.watcher = asyncio.create_task(self._watch(m, ident, popen))
        check = launch.health_check(m.spec, m.manifest)
        if check is not None:
            account, refusal = None, None
            if check.command is not None:
                try:
                    account = self.account(m.spec, m.manifest)
                except GdosError as exc:
                    refusal = exc.message
            ctx = launch.probe_context(
                m.spec, m.manifest, self.instance_dir(m.id), account, refusal
            )
            m.monitor = HealthMonitor(check, ctx, lambda h, d: self._health_changed(m, ident, h, d))
            m.monitor.start()

    def _health_changed(
        self, m: Managed, ident: process.Identity, health: HealthState, detail: str | None
    ) -> None:
        if m.pid != ident.pid:
            return  # a late probe of a process that is gone
        m.health, m.health_detail = health, detail
        self.on_report(m.report())  # not persisted: health is re-probed after an agent restart

    def _stop_monitor(self, m: Managed) -> None:
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
        self._stop_monitor(m)
        m.popen, m.pid, m.create_time, m.cmdline = None, None, None, None
        m.exit_code = code
        if m.state == InstanceState.STOPPING and m.stopping_saved is not None:
            m.state = InstanceState.STOPPED
            # Reported before its own save: once `stopping` is written, an agent that dies now
            # comes back to "stopping, process gone", which it reads as stopped. One state
            # write less between the exit and the master hearing of it.
            await m.stopping_saved
            self.on_report(m.report())
            await self._commit(durable=False)
            return
        if m.state in (InstanceState.STOPPING, InstanceState.DESTROYING):
            if m.state == InstanceState.STOPPING:
                m.state = InstanceState.STOPPED
            await self._commit(m, durable=False)
            return
        await self._after_unexpected_exit(m, _exit_text(code), code)

    async def _after_unexpected_exit(self, m: Managed, reason: str, code: int | None) -> None:
        """Apply the restart policy: restart (now or after a backoff), or give up."""
        policy = launch.restart_policy(m.spec, m.manifest)
        if not policy.wants_restart(code):
            m.state, m.error, m.restart_pending = InstanceState.EXITED, reason, False
            log.warning("%s exited on its own: %s", m.spec.name, reason)
            await self._commit(m, durable=False)
            return
        if m.backoff is None or m.backoff.policy != policy:
            m.backoff = Backoff(policy)
        delay = m.backoff.on_failure()
        if delay is None:
            m.state, m.restart_pending = InstanceState.FAILED, False
            m.error = (
                f"{reason}; gave up after {policy.limit} failures within {policy.window:g} s "
                "(a manual start tries again)"
            )
            log.error("%s: %s", m.spec.name, m.error)
            await self._commit(m, durable=False)
            return
        m.state, m.restart_pending = InstanceState.EXITED, True
        m.error = f"{reason}; restarting" + (f" in {delay:.1f} s" if delay else "")
        log.warning("%s: %s", m.spec.name, m.error)
        m.restart_task = asyncio.create_task(self._restart_later(m, delay))
        if delay > 0:
            await self._commit(m, durable=False)
        # With no delay the restart saves once, right after its spawn: the state file still
        # says running, and a crash in between is recovered by the environment marker.

    async def _restart_later(self, m: Managed, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        async with m.lock:
            if m.state != InstanceState.EXITED or not m.restart_pending:
                return  # a stop or a manual start came first
            m.restarts += 1
            try:
                await self._start_locked(m, manual=False)
            except GdosError as exc:
                failure = exc.message
            else:
                return
        await self._after_unexpected_exit(m, failure, None)

    def _cancel_restart(self, m: Managed) -> None:
        m.restart_pending = False
        task, m.restart_task = m.restart_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # -- commands ---------------------------------------------------------------------------

    async def deploy(self, spec: InstanceSpec) -> None:
        existing = self.instances.get(spec.instance_id)
        if existing is not None:
            same = (
                existing.spec.package is not None
                and spec.package is not None
                and existing.spec.package.sha256 == spec.package.sha256
            )
            if same and existing.manifest:
                self.on_report(existing.report())
                return  # the same deploy again (after a reconnect): nothing to do
            raise GdosError(ErrorCode.CONFLICT, f"instance {spec.name} is already deployed here")
        package = spec.package
        if package is None:
            raise GdosError(ErrorCode.BAD_REQUEST, f"deploy of {spec.name} names no package")
        m = Managed(spec=spec)
        self.instances[m.id] = m
        async with m.lock:
            await self._commit(m)
            inst_dir = self.instance_dir(m.id)
            try:
                await asyncio.to_thread(inst_dir.mkdir, parents=True, exist_ok=True)
                zip_path = inst_dir / "package.zip"
                await self.fetch(package, zip_path)
                manifest = await asyncio.to_thread(deploy.unpack, zip_path, inst_dir / "app")
                zip_path.unlink(missing_ok=True)
                if manifest.os and manifest.os != os_name():
                    raise GdosError(
                        ErrorCode.OS_MISMATCH,
                        f"package {package.name} is for {manifest.os}; this node runs {os_name()}",
                    )
                logs.check_log_roots(manifest.log_paths, self.log_roots, inst_dir)
                account = self.account(spec, manifest)
                await asyncio.to_thread(runas.prepare_folders, inst_dir, account, manifest)
            except (GdosError, OSError) as exc:
                shutil.rmtree(inst_dir, ignore_errors=True)
                del self.instances[m.id]
                m.state, m.error = InstanceState.FAILED, _message(exc)
                await self._commit(m)
                if isinstance(exc, GdosError):
                    raise
                raise GdosError(ErrorCode.DEPLOY_FAILED, f"deploy failed: {exc}") from None
            m.manifest, m.user = manifest, account.user
            m.state, m.error = InstanceState.STOPPED, None
            await self._commit(m)
            log.info("deployed %s (%s %s)", spec.name, package.name, package.version)

    async def start(self, instance_id: str) -> None:
        m = self.get(instance_id)
        async with m.lock:
            await self._start_locked(m, manual=True)

    async def _start_locked(self, m: Managed, manual: bool) -> None:
        if (
            m.state in (InstanceState.RUNNING, InstanceState.STARTING)
            and m.identity
            and process.find(m.identity)
        ):
            return  # never a second process
        if m.state in BUSY_STATES or (m.manifest is None and not m.adopted):
            raise GdosError(ErrorCode.INVALID_STATE, f"instance {m.spec.name} is {m.state}")
        if manual:
            self._cancel_restart(m)  # an operator's start resets the restart policy
            if m.backoff is not None:
                m.backoff.reset()
        m.restart_pending = False
        inst_dir = self.instance_dir(m.id)
        plan = launch.start_plan(m.spec, m.manifest, inst_dir)
        try:
            account = self.account(m.spec, m.manifest)
        except GdosError as exc:
            m.state, m.error = InstanceState.FAILED, f"cannot start {m.spec.name}: {exc.message}"
            await self._commit(m, durable=False)
            raise GdosError(exc.code, m.error) from None
        plan = launch.with_account(plan, account, inst_dir, deployed=not m.adopted)
        log_dir = inst_dir / "logs"  # made by the spawn's thread: a mkdir can wait for the disk
        data = () if m.adopted else (inst_dir / runas.DATA_DIR,)
        m.state, m.error, m.exit_code = InstanceState.STARTING, None, None
        # No save before the spawn: if the agent dies right after it, the next agent finds the
        # process by its environment marker (see load), whatever state was saved.
        since = time.time()
        try:
            popen = await process.spawn_logged(
                plan.argv,
                plan.cwd,
                plan.env,
                log_dir / "stdout.log",
                log_dir / "stderr.log",
                account.popen_options(),
                data,
            )
        except OSError as exc:
            m.state = InstanceState.FAILED
            m.error = f"cannot start {plan.argv[0]}: {exc.strerror or exc}"
            await self._commit(m, durable=False)
            raise GdosError(ErrorCode.START_FAILED, m.error) from None
        if plan.target is None:
            ident = process.identity_of(popen.pid) or process.Identity(popen.pid, time.time())
        else:
            try:
                found = await locate.find_started(
                    plan.target,
                    popen,
                    since,
                    self._managed_pids(),
                    (ENV_INSTANCE_ID, m.id),
                    launch.LOCATE_TIMEOUT,
                )
                ident = process.full_identity(found)
            except (GdosError, psutil.Error) as exc:
                self._discard_launcher(popen)
                m.state = InstanceState.FAILED
                m.error = f"{m.spec.name} did not start: {_message(exc)}"
                await self._commit(m, durable=False)
                raise GdosError(ErrorCode.START_FAILED, m.error) from None
        child: subprocess.Popen[bytes] | None = popen
        if ident.pid != popen.pid:
            self._spawn_bg(_reap(popen))  # the start command: done once it exits
            child = None
        m.popen = child
        m.user = account.user if child is not None else _owner(ident.pid) or account.user
        m.pid, m.create_time = ident.pid, ident.create_time
        m.cmdline = list(ident.cmdline) if ident.cmdline is not None else None
        m.state, m.started_at = InstanceState.RUNNING, time.time()
        self._watch_process(m, child)
        if plan.target is None:
            # Reported before its save, so that the last report of a batch waits for no write:
            # an agent that dies in between finds the process by its environment marker (see
            # load). A process found by name or command line may not carry the marker.
            self.on_report(m.report())
            await self._commit(durable=False)
        else:
            await self._commit(m, durable=False)
        log.info("started %s (pid %d)", m.spec.name, m.pid)

    def _discard_launcher(self, popen: subprocess.Popen[bytes]) -> None:
        """A start command that brought up nothing usable: stop what it started."""
        ident = process.identity_of(popen.pid)
        proc = process.find(ident) if ident else None
        if proc is not None:
            process.kill_tree(process.tree(proc))
        self._spawn_bg(_reap(popen))

    async def stop(self, instance_id: str) -> None:
        m = self.get(instance_id)
        async with m.lock:
            await self._stop_locked(m, InstanceState.STOPPING)

    async def _stop_locked(self, m: Managed, transition: InstanceState) -> None:
        self._cancel_restart(m)
        ident = m.identity
        proc = process.find(ident) if ident else None
        if proc is None:
            self._stop_monitor(m)
            if transition == InstanceState.DESTROYING:
                m.state = transition
            elif m.state != InstanceState.STOPPED:
                # Also acknowledges an exited or failed instance: nothing restarts it now.
                m.state, m.pid, m.create_time, m.cmdline = InstanceState.STOPPED, None, None, None
            await self._commit(m, durable=False)
            return
        procs = process.tree(proc)
        process.guard_tree(procs, m.spec.name)  # before anything changes: it keeps running
        m.state = transition
        # The save runs while the process stops (it used to come first): stop latency is then
        # the longer of the two, not their sum. An agent dying in that window finds the
        # process gone and the state running: the master, wanting it stopped, says so again.
        saving = asyncio.ensure_future(self._commit(m, durable=False))
        m.stopping_saved = saving
        timeout = launch.stop_timeout(m.spec, m.manifest)
        plan = launch.stop_plan(m.spec, m.manifest, self.instance_dir(m.id))
        if plan is not None:
            await self._run_stop_command(m, plan, timeout)
        else:
            process.terminate_tree(procs)
        left = await self._wait_stopped(m, procs, timeout)
        await saving
        m.stopping_saved = None
        if left:
            log.warning("%s did not stop within %.0f s: killing", m.spec.name, timeout)
            process.kill_tree(left)
            left = await process.wait_gone(left, 5.0)
        if m.watcher is not None:
            await asyncio.wait({m.watcher}, timeout=5.0)
        if left:
            raise GdosError(
                ErrorCode.STOP_FAILED,
                f"{len(left)} process(es) of {m.spec.name} survived SIGKILL",
                {"pids": [p.pid for p in left]},
            )

    async def _wait_stopped(
        self, m: Managed, procs: list[psutil.Process], timeout: float
    ) -> list[psutil.Process]:
        """The leader's exit is an event (its watcher); the rest of the tree is checked after."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if m.watcher is not None and not m.watcher.done():
            await asyncio.wait({m.watcher}, timeout=timeout)
        return await process.wait_gone(procs, max(0.0, deadline - loop.time()))

    async def _run_stop_command(self, m: Managed, plan: launch.Plan, timeout: float) -> None:
        try:
            account = self.account(m.spec, m.manifest)  # the stop command runs as the service
            plan = launch.with_account(plan, account, self.instance_dir(m.id), not m.adopted)
            proc = await asyncio.create_subprocess_exec(
                *plan.argv,
                cwd=plan.cwd,
                env=plan.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **account.popen_options(),
            )
        except GdosError as exc:
            log.warning("stop command of %s not run: %s; sending SIGTERM", m.spec.name, exc)
            if m.identity and (p := process.find(m.identity)):
                process.terminate_tree(process.tree(p))
            return
        except OSError as exc:
            log.warning("stop command of %s failed to start: %s; sending SIGTERM", m.spec.name, exc)
            if m.identity and (p := process.find(m.identity)):
                process.terminate_tree(process.tree(p))
            return
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def adopt(self, spec: InstanceSpec) -> InstanceReport:
        """Take over a running process found by PID file, name or command line."""
        adopt = spec.adopt
        if adopt is None:
            raise GdosError(ErrorCode.BAD_REQUEST, "adopt needs an adopt spec")
        existing = self.instances.get(spec.instance_id)
        if existing is not None:
            if existing.adopted and existing.spec.adopt == adopt:
                return existing.report()  # the same adopt again (a retry): nothing to do
            raise GdosError(ErrorCode.CONFLICT, f"instance {spec.name} already exists here")
        logs.check_log_roots(adopt.log_paths, self.log_roots, self.instance_dir(spec.instance_id))
        if adopt.user or adopt.group or spec.user or spec.group:
            self.account(spec, None)  # an account named for its commands must be usable here
        managed = self._managed_pids()
        target = launch.adopt_target(adopt)
        if target.pid_file is not None:
            proc = locate.from_pid_file(target.pid_file, target.matcher)
        else:
            assert target.matcher is not None
            barred: list[psutil.Process] = []
            found = await asyncio.to_thread(locate.scan, target.matcher, managed, None, barred)
            if not found and barred:
                locate.refuse_protected(barred[0], target.matcher.description)
            proc = locate.only_one(found, target.matcher.description)
        if proc.pid in managed:
            owner = next(m for m in self.instances.values() if m.pid == proc.pid)
            raise GdosError(
                ErrorCode.CONFLICT,
                f"process {proc.pid} is already managed here as {owner.spec.name}",
                {"instance_id": owner.id},
            )
        try:
            ident = process.full_identity(proc)
        except psutil.Error:
            raise GdosError(
                ErrorCode.PROCESS_NOT_FOUND, f"process {proc.pid} ended while being adopted"
            ) from None
        m = Managed(spec=spec, adopted=True, state=InstanceState.RUNNING)
        m.pid, m.create_time, m.cmdline = ident.pid, ident.create_time, list(ident.cmdline or ())
        m.started_at, m.user = ident.create_time, _owner(ident.pid)
        self.instances[m.id] = m
        async with m.lock:
            # For the logs of its commands; off the loop, as a mkdir can wait for the disk.
            try:
                await asyncio.to_thread(self.instance_dir(m.id).mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                del self.instances[m.id]
                await self._commit()  # another save may have written it meanwhile
                raise GdosError(ErrorCode.INTERNAL, f"cannot adopt {spec.name}: {exc}") from None
            self._watch_process(m, None)
            await self._commit(m)
        log.info("adopted %s (pid %d: %s)", spec.name, m.pid, " ".join(m.cmdline)[:200])
        return m.report()

    async def destroy(self, instance_id: str) -> None:
        m = self.instances.get(instance_id)
        if m is None:
            return  # already gone: destroy is idempotent
        async with m.lock:
            if m.adopted:
                # Forget it: the process and its files were never ours; it keeps running.
                self._cancel_restart(m)
                self._stop_monitor(m)
                if m.watcher is not None:
                    m.watcher.cancel()
                m.pid = None  # a late exit event must not touch it any more
            else:
                await self._stop_locked(m, InstanceState.DESTROYING)
                await asyncio.to_thread(shutil.rmtree, self.instance_dir(m.id), True)
            self.instances.pop(m.id, None)
            await self._commit()
            log.info("%s %s", "forgot" if m.adopted else "destroyed", m.spec.name)

    async def close(self) -> None:
        """Agent shutdown: stop watching; the services themselves keep running."""
        for m in self.instances.values():
            if m.monitor is not None:
                m.monitor.stop()
            for task in (m.watcher, m.restart_task):
                if task is not None:
                    task.cancel()
        for task in list(self._background):
            task.cancel()


async def _reap(popen: subprocess.Popen[bytes]) -> None:
    ident = process.identity_of(popen.pid) or process.Identity(popen.pid, 0.0)
    await process.wait_exit(ident, popen)


def _processes_by_marker() -> dict[str, psutil.Process]:
    """Instance id -> the live process carrying it that the agent started.

    A service's own children inherit the marker. The agent starts every service as the leader
    of a new session, and a child stays in its parent's session, so a leader is taken first,
    then the oldest. Oldest alone would take the child a crashed service left running over the
    service restarted after it (where there are no sessions, oldest it is)."""
    found: dict[str, tuple[tuple[bool, float], psutil.Process]] = {}
    for proc in psutil.process_iter(["create_time", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            value = proc.environ().get(ENV_INSTANCE_ID)
            if not value:
                continue
            rank = (not _leads_its_session(proc.pid), proc.info["create_time"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if value not in found or rank < found[value][0]:
            found[value] = (rank, proc)
    return {value: proc for value, (_, proc) in found.items()}


def _leads_its_session(pid: int) -> bool:
    if not hasattr(os, "getsid"):  # Windows has no sessions of this kind
        return False
    return os.getsid(pid) == pid


def _owner(pid: int) -> str | None:
    """The account a process runs as (None when it cannot be told)."""
    try:
        return psutil.Process(pid).username()
    except (psutil.Error, KeyError):
        return None


def _cmdline(proc: psutil.Process) -> list[str] | None:
    try:
        return proc.cmdline()
    except psutil.Error:
        return None


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, GdosError) else str(exc)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "the process ended (exit code unknown: it was not started by this agent run)"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
