"""The agent's commands on its instances (deploy, start, stop, prepare, switch, adopt, destroy)
and its start-up, which re-adopts what the last agent ran and tidies its release folders.

Commands on one instance run one at a time (a lock per instance); different instances run
concurrently. A change is saved, then reported (the two exceptions say why where they happen),
so what the master hears is what the agent will remember after a crash. States change only
through `Managed.change_state` (checked against `states.TRANSITIONS`); what an exit leads to is
`watch`'s; the work on the host is done by `deploy`, `start`, `stop`, `readopt` and `locate`,
and changes of release by `upgrade`.
"""

import asyncio
import functools
import logging
import shutil
import time
from pathlib import Path

import psutil

from agent import logs
from agent.executor import deploy, launch, locate, process, protected, releases, states, upgrade
from agent.executor.deploy import Fetch
from agent.executor.downloads import Downloads
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.managed import Managed
from agent.executor.readopt import Survivors
from agent.executor.start import Started, StartFailed, bring_up
from agent.executor.states import ProcessState
from agent.executor.stop import TermBurst, kill_left, request_stop, wait_stopped
from agent.executor.table import InstanceTable, Report
from agent.executor.watch import Watch
from agent.flags import DEFAULT_LOG_ROOTS
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.messages import InstanceReport, InstanceSpec, PackageRef, Settings

log = logging.getLogger(__name__)

__all__ = ["ENV_INSTANCE_ID", "Managed", "Report", "Supervisor"]

S = ProcessState
# A stop still under way this long after its save is reported as such. The master wrote
# `stopping` itself when it asked; a quicker stop's `stopped` comes alone, one message less.
STOPPING_SAID_AFTER = 0.5


class Supervisor(InstanceTable):
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
        super().__init__(work_dir, state, report, default_user)
        self.log_roots = log_roots  # where absolute log_paths may point (--log-roots)
        self.fetch = fetch
        self.downloads = Downloads(fetch, work_dir)
        self.watch = Watch(self, functools.partial(self._start_locked, manual=False))
        self.terms = TermBurst()  # the SIGTERMs of the stops of one turn, sent together

    # -- start-up: re-adopt what survived the agent -------------------------------------------

    async def load(self) -> None:
        await asyncio.to_thread(self.downloads.clean)
        survivors = Survivors()
        ended: list[Managed] = []
        for instance_id, record in self.state.instances.items():
            try:
                m = Managed.from_record(record)
            except (KeyError, ValueError) as exc:
                log.error("state of instance %s is unreadable (%s); ignoring it", instance_id, exc)
                continue
            if m.state == S.DEPLOYING:
                # Interrupted deploy: forget it; the master sees it missing and deploys again.
                shutil.rmtree(self.instance_dir(m.id), ignore_errors=True)
                continue
            self.instances[m.id] = m
            if not m.adopted:
                await asyncio.to_thread(self._settle_releases, m)
            if self._readopt(m, survivors.of(m)):
                ended.append(m)
        try:
            await self.state.save()
        except OSError as exc:  # the agent cannot run like this: it stops (see __main__)
            raise self.not_saved(exc) from exc
        for m in ended:
            if m.state == S.BACKOFF:  # it was waiting out a backoff when the agent stopped
                self.watch.restart_after(m, 0.0)
            else:  # it ended while nobody watched: the restart policy still applies
                await self.watch.after_unexpected_exit(m, m.error or "the process ended", None)

    def _settle_releases(self, m: Managed) -> None:
        """Releases as the state file says: an instance unpacked by an agent before releases
        moved into `releases/` (its process keeps running), what an interrupted prepare left
        removed, and `current` pointing at the recorded release."""
        inst_dir = self.instance_dir(m.id)
        if m.release is None and m.spec.package is not None and m.manifest is not None:
            name = releases.release_name(m.spec.package)
            if releases.migrate_legacy(inst_dir, name):
                m.release = name
                m.releases = (releases.Release(name, m.spec.package, m.manifest),)
        m.releases = tuple(
            r
            for r in m.releases
            if r.name == m.release or releases.folder(inst_dir, r.name).is_dir()
        )
        releases.tidy(inst_dir, {r.name for r in m.releases}, m.release)

    def _readopt(self, m: Managed, proc: psutil.Process | None) -> bool:
        """Take up where the last agent left; True when the restart policy has a say."""
        if proc is not None and m.state != S.DESTROYING:
            m.pid, m.create_time = proc.pid, proc.create_time()
            m.change_state(S.RUNNING)
            log.info("re-adopted %s (pid %d)", m.spec.name, m.pid)
            self.watch.begin(m, None)
        elif m.state in states.ACTIVE:
            m.forget_process()
            if m.state == S.STOPPING:
                m.change_state(S.STOPPED)
            else:
                m.change_state(S.EXITED, error="the process ended while the agent was not running")
                return launch.restart_policy(m.spec, m.manifest).wants_restart(None)
        elif m.state == S.DESTROYING:
            m.change_state(S.STOPPED)  # the master re-sends the destroy
        elif m.state == S.BACKOFF:
            return True  # a restart was waiting out its backoff
        return False

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
            await self.commit(m)
            inst_dir = self.instance_dir(m.id)
            try:
                release, account = await deploy.install(
                    self.downloads.get,
                    package,
                    inst_dir,
                    self.log_roots,
                    functools.partial(self.account, spec),
                )
                await asyncio.to_thread(releases.write_pointer, inst_dir, release.name)
            except (GdosError, OSError) as exc:
                shutil.rmtree(inst_dir, ignore_errors=True)
                del self.instances[m.id]
                m.change_state(S.FAILED, error=str(exc))
                await self.commit(m)
                if isinstance(exc, GdosError):
                    raise
                raise GdosError(ErrorCode.DEPLOY_FAILED, f"deploy failed: {exc}") from None
            m.manifest, m.user = release.manifest, account.user
            m.release, m.releases = release.name, (release,)
            m.change_state(S.STOPPED, error=None)
            await self.commit(m)
            log.info("deployed %s (%s %s)", spec.name, package.name, package.version)

    async def start(self, instance_id: str, settings: Settings | None = None) -> None:
        """Start (an operator's start); `settings`, when given, apply from this start on."""
        m = self.get(instance_id)
        async with m.lock:
            upgrade.apply_settings(m, settings)
            await self.start_locked(m)

    async def start_locked(self, m: Managed) -> None:
        await self._start_locked(m, manual=True)

    async def _start_locked(self, m: Managed, manual: bool) -> None:
        if m.state in (S.RUNNING, S.STARTING) and m.identity and process.find(m.identity):
            return  # never a second process
        if m.state in states.BUSY or (m.manifest is None and not m.adopted):
            raise GdosError(
                ErrorCode.INVALID_STATE, f"instance {m.spec.name} is {states.on_wire(m.state)}"
            )
        if manual:
            self.watch.cancel_restart(m)  # an operator's start resets the restart policy
            if m.backoff is not None:
                m.backoff.reset()
        inst_dir = self.instance_dir(m.id)
        plan = launch.start_plan(m.spec, m.manifest, inst_dir, self.app_dir(m))
        try:
            account = self.account(m.spec, m.manifest)
            plan = launch.with_account(plan, account, inst_dir, deployed=not m.adopted)
            check = launch.health_check(m.spec, m.manifest)
            plan = launch.expanded(plan, check, args=not m.adopted)
        except GdosError as exc:
            error = f"cannot start {m.spec.name}: {exc.message}"
            m.change_state(S.FAILED, error=error)
            await self.commit(m, durable=False)
            raise GdosError(exc.code, error) from None
        m.change_state(S.STARTING, error=None)
        m.exit_code = None
        # No save before the spawn: if the agent dies right after it, the next agent finds the
        # process by its environment marker (see readopt), whatever state was saved.
        try:
            started = await bring_up(
                m.spec.name,
                m.id,
                plan,
                account,
                inst_dir,
                not m.adopted,
                self.managed_pids(),
                self.spawn_bg,
            )
        except StartFailed as exc:
            m.change_state(S.FAILED, error=str(exc))
            await self.commit(m, durable=False)
            raise GdosError(ErrorCode.START_FAILED, str(exc)) from None
        await self._running(m, started, marked=plan.target is None)

    async def _running(self, m: Managed, started: Started, marked: bool) -> None:
        """Record the started process, watch it, save and report; `marked`: the service is
        the spawned process, which carries the environment marker."""
        ident = started.ident
        m.popen, m.user = started.child, started.user
        m.pid, m.create_time = ident.pid, ident.create_time
        m.cmdline = list(ident.cmdline) if ident.cmdline is not None else None
        m.started_at = time.time()
        m.change_state(S.RUNNING)
        self.watch.begin(m, started.child)
        if marked:
            # Reported before its save, so that the last report of a batch waits for no write:
            # an agent that dies in between finds the process by its environment marker (see
            # readopt). A process found by name or command line may not carry the marker.
            self.on_report(m.report())
            await self.commit(durable=False)
        else:
            await self.commit(m, durable=False)
        log.info("started %s (pid %d)", m.spec.name, ident.pid)

    async def stop(self, instance_id: str) -> None:
        m = self.get(instance_id)
        async with m.lock:
            await self.stop_locked(m)

    async def stop_locked(self, m: Managed) -> None:
        await self._stop_locked(m, S.STOPPING)

    async def _stop_locked(self, m: Managed, transition: ProcessState) -> None:
        self.watch.cancel_restart(m)
        ident = m.identity
        proc = process.find(ident, m.popen) if ident else None
        if proc is None:
            self.watch.stop_monitor(m)
            if transition == S.DESTROYING:
                m.change_state(transition)
            elif m.state != S.STOPPED:
                # Also acknowledges an exited or failed instance: nothing restarts it now.
                m.forget_process()
                m.change_state(S.STOPPED)
            await self.commit(m, durable=False)
            return
        procs = process.tree(proc)
        child = m.popen is not None and m.popen.pid == proc.pid and m.popen.returncode is None
        # Before anything changes: a refused stop leaves the process running as it was.
        protected.guard_tree(procs, m.spec.name, child)
        m.change_state(transition)
        # The save runs while the process stops: stop latency is then the longer of the two,
        # not their sum. An agent dying in that window finds the process gone and the state
        # running: the master, wanting it stopped, says so again.
        saving = asyncio.ensure_future(self._save_stopping(m, transition))
        m.stopping_saved = saving
        timeout = launch.stop_timeout(m.spec, m.manifest)
        account = functools.partial(self.account, m.spec, m.manifest)
        folders = lambda: (self.instance_dir(m.id), self.app_dir(m))  # noqa: E731
        await request_stop(m, procs, folders, account, timeout, self.terms)
        left = await wait_stopped(m.watcher, procs, timeout)
        await saving
        m.stopping_saved = None
        left = await kill_left(left, m.spec.name, timeout)
        if m.watcher is not None and not m.watcher.done():
            await asyncio.wait({m.watcher}, timeout=5.0)
        if left:
            raise GdosError(
                ErrorCode.STOP_FAILED,
                f"{len(left)} process(es) of {m.spec.name} survived SIGKILL",
                {"pids": [p.pid for p in left]},
            )

    async def _save_stopping(self, m: Managed, transition: ProcessState) -> None:
        """Save the stop's first state, then report it if the process is still stopping a
        moment later: its watcher reports `stopped` right after this save (one report per
        stop, not two)."""
        try:
            await self.commit(durable=False)
        except GdosError:
            self.on_report(m.report())  # as `commit` does: the change happened, only not on disk
            raise
        if m.state == transition:
            loop = asyncio.get_running_loop()
            loop.call_later(STOPPING_SAID_AFTER, self._still_stopping, m, transition)

    def _still_stopping(self, m: Managed, transition: ProcessState) -> None:
        if m.state == transition:
            self.on_report(m.report())

    async def prepare(self, instance_id: str, package: PackageRef) -> tuple[str, bool]:
        """A release of `package` beside the running one; (its name, whether it was fetched)."""
        release, fetched = await upgrade.prepare(self, self.get(instance_id), package)
        return release.name, fetched

    async def switch(
        self,
        instance_id: str,
        package: PackageRef,
        start: bool | None = None,
        settings: Settings | None = None,
    ) -> str | None:
        """Make the prepared release of `package` current; the release current before."""
        return await upgrade.switch(self, self.get(instance_id), package, start, settings)

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
        managed = self.managed_pids()
        proc = await locate.find_adoptable(launch.adopt_target(adopt), managed)
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
        m = Managed(spec=spec, adopted=True, state=S.RUNNING)
        m.pid, m.create_time, m.cmdline = ident.pid, ident.create_time, list(ident.cmdline or ())
        m.started_at, m.user = ident.create_time, process.owner(ident.pid)
        self.instances[m.id] = m
        async with m.lock:
            # For the logs of its commands; off the loop, as a mkdir can wait for the disk.
            try:
                await asyncio.to_thread(self.instance_dir(m.id).mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                del self.instances[m.id]
                await self.commit()  # another save may have written it meanwhile
                raise GdosError(ErrorCode.INTERNAL, f"cannot adopt {spec.name}: {exc}") from None
            self.watch.begin(m, None)
            await self.commit(m)
        log.info("adopted %s (pid %d: %s)", spec.name, m.pid, " ".join(m.cmdline)[:200])
        return m.report()

    async def destroy(self, instance_id: str) -> None:
        m = self.instances.get(instance_id)
        if m is None:
            return  # already gone: destroy is idempotent
        if m.prepare_task is not None:
            m.prepare_task.cancel()  # a release being fetched for an instance about to go
        async with m.lock, m.prepare_lock:
            if m.adopted:
                # Forget it: the process and its files were never ours; it keeps running.
                self.watch.cancel_restart(m)
                self.watch.stop_monitor(m)
                if m.watcher is not None:
                    m.watcher.cancel()
                m.pid = None  # a late exit event must not touch it any more
            else:
                await self._stop_locked(m, S.DESTROYING)
                await asyncio.to_thread(shutil.rmtree, self.instance_dir(m.id), True)
            self.instances.pop(m.id, None)
            await self.commit()
            log.info("%s %s", "forgot" if m.adopted else "destroyed", m.spec.name)

    async def close(self) -> None:
        """Agent shutdown: stop watching; the services themselves keep running."""
        for m in self.instances.values():
            if m.monitor is not None:
                m.monitor.stop()
            for task in (m.watcher, m.restart_task):
                if task is not None:
                    task.cancel()
        pending = self.save_pending()
        self.cancel_background()
        if pending:  # a stop's `stopped` waiting for its burst: on disk before the agent ends
            await self._save_logged()
