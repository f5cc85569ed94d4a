"""The agent's instance table: each instance's state machine, persisted, reported, re-adopted.

Commands on one instance run one at a time (a lock per instance); different instances run
concurrently. Every change is saved before it is reported, so what the master hears is what
the agent will remember after a crash.
"""

import asyncio
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agent.executor import deploy, process
from agent.hostinfo import os_name
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.frozen import child_environ
from protocol.manifest import Manifest
from protocol.messages import InstanceReport, InstanceSpec, PackageRef
from protocol.states import ACTIVE_STATES, BUSY_STATES, HealthState, InstanceState

log = logging.getLogger(__name__)

ENV_INSTANCE_ID = "GDOS_INSTANCE_ID"
Fetch = Callable[[PackageRef, Path], Awaitable[None]]
Report = Callable[[InstanceReport], None]


@dataclass
class Managed:
    spec: InstanceSpec
    manifest: Manifest | None = None
    state: InstanceState = InstanceState.DEPLOYING
    pid: int | None = None
    create_time: float | None = None
    started_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    restarts: int = 0
    health: HealthState = HealthState.UNKNOWN
    adopted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    popen: subprocess.Popen[bytes] | None = None
    watcher: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.spec.instance_id

    @property
    def identity(self) -> process.Identity | None:
        if self.pid is None or self.create_time is None:
            return None
        return process.Identity(self.pid, self.create_time)

    def report(self) -> InstanceReport:
        return InstanceReport(
            instance_id=self.id,
            state=self.state,
            pid=self.pid,
            create_time=self.create_time,
            started_at=self.started_at,
            exit_code=self.exit_code,
            error=self.error,
            restarts=self.restarts,
            health=self.health,
            adopted=self.adopted,
        )

    def record(self) -> dict[str, Any]:
        return {
            "spec": self.spec.model_dump(mode="json"),
            "manifest": self.manifest.model_dump(mode="json") if self.manifest else None,
            **self.report().model_dump(mode="json", exclude={"instance_id", "health"}),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Managed":
        manifest = record.get("manifest")
        return cls(
            spec=InstanceSpec.model_validate(record["spec"]),
            manifest=Manifest.model_validate(manifest) if manifest else None,
            state=InstanceState(record.get("state", "stopped")),
            pid=record.get("pid"),
            create_time=record.get("create_time"),
            started_at=record.get("started_at"),
            exit_code=record.get("exit_code"),
            error=record.get("error"),
            restarts=record.get("restarts", 0),
            adopted=record.get("adopted", False),
        )


class Supervisor:
    def __init__(self, work_dir: Path, state: StateFile, fetch: Fetch, report: Report) -> None:
        self.work_dir = work_dir
        self.state = state
        self.fetch = fetch
        self.on_report = report
        self.instances: dict[str, Managed] = {}

    # -- persistence and reporting -----------------------------------------------------------

    def instance_dir(self, instance_id: str) -> Path:
        return self.work_dir / instance_id

    async def _commit(self, m: Managed | None = None) -> None:
        """Save the table, then tell the master about `m`."""
        self.state.instances = {i: x.record() for i, x in self.instances.items()}
        await self.state.save()
        if m is not None:
            self.on_report(m.report())

    def reports(self) -> list[InstanceReport]:
        return [m.report() for m in self.instances.values()]

    def get(self, instance_id: str) -> Managed:
        m = self.instances.get(instance_id)
        if m is None:
            raise GdosError(ErrorCode.NOT_FOUND, f"this node has no instance {instance_id}")
        return m

    # -- start-up: re-adopt what survived the agent -------------------------------------------

    async def load(self) -> None:
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
            self._readopt(m)
        await self._commit()

    def _readopt(self, m: Managed) -> None:
        ident = m.identity
        proc = process.find(ident) if ident else None
        if proc is None and m.state in (InstanceState.STARTING, InstanceState.RUNNING):
            proc = self._find_by_marker(m.id)  # crashed between spawn and save
        if proc is not None and m.state in ACTIVE_STATES:
            m.pid, m.create_time = proc.pid, proc.create_time()
            m.state = InstanceState.RUNNING
            log.info("re-adopted %s (pid %d)", m.spec.name, m.pid)
            m.watcher = asyncio.create_task(
                self._watch(m, process.Identity(m.pid, m.create_time), None)
            )
        elif m.state in ACTIVE_STATES:
            was_stopping = m.state == InstanceState.STOPPING
            m.state = InstanceState.STOPPED if was_stopping else InstanceState.EXITED
            m.pid = m.create_time = None
            if not was_stopping:
                m.error = "the process ended while the agent was not running"
        elif m.state == InstanceState.DESTROYING:
            m.state = InstanceState.STOPPED  # the master re-sends the destroy

    def _find_by_marker(self, instance_id: str) -> psutil.Process | None:
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.environ().get(ENV_INSTANCE_ID) == instance_id:
                    return proc
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
        return None

    # -- commands ---------------------------------------------------------------------------

    async def deploy(self, spec: InstanceSpec) -> None:
        existing = self.instances.get(spec.instance_id)
        if existing is not None:
            if existing.spec.package.sha256 == spec.package.sha256 and existing.manifest:
                self.on_report(existing.report())
                return  # the same deploy again (after a reconnect): nothing to do
            raise GdosError(ErrorCode.CONFLICT, f"instance {spec.name} is already deployed here")
        m = Managed(spec=spec)
        self.instances[m.id] = m
        async with m.lock:
            await self._commit(m)
            inst_dir = self.instance_dir(m.id)
            try:
                inst_dir.mkdir(parents=True, exist_ok=True)
                zip_path = inst_dir / "package.zip"
                await self.fetch(spec.package, zip_path)
                manifest = await asyncio.to_thread(deploy.unpack, zip_path, inst_dir / "app")
                zip_path.unlink(missing_ok=True)
                if manifest.os and manifest.os != os_name():
                    raise GdosError(
                        ErrorCode.OS_MISMATCH,
                        f"package {spec.package.name} is for {manifest.os}; this node runs {os_name()}",
                    )
            except (GdosError, OSError) as exc:
                shutil.rmtree(inst_dir, ignore_errors=True)
                del self.instances[m.id]
                m.state, m.error = InstanceState.FAILED, _message(exc)
                await self._commit(m)
                if isinstance(exc, GdosError):
                    raise
                raise GdosError(ErrorCode.DEPLOY_FAILED, f"deploy failed: {exc}") from None
            m.manifest = manifest
            m.state, m.error = InstanceState.STOPPED, None
            await self._commit(m)
            log.info("deployed %s (%s %s)", spec.name, spec.package.name, spec.package.version)

    async def start(self, instance_id: str) -> None:
        m = self.get(instance_id)
        async with m.lock:
            await self._start_locked(m)

    async def _start_locked(self, m: Managed) -> None:
        if (
            m.state in (InstanceState.RUNNING, InstanceState.STARTING)
            and m.identity
            and process.find(m.identity)
        ):
            return  # never a second process
        if m.state in BUSY_STATES or m.manifest is None:
            raise GdosError(ErrorCode.INVALID_STATE, f"instance {m.spec.name} is {m.state}")
        manifest = m.manifest
        app = self.instance_dir(m.id) / "app"
        exe = process.executable(app / manifest.entrypoint)
        args = m.spec.args if m.spec.args is not None else manifest.args
        env = {**child_environ(), **manifest.env, **m.spec.env}
        env[ENV_INSTANCE_ID] = m.id
        env["GDOS_INSTANCE_NAME"] = m.spec.name
        logs = self.instance_dir(m.id) / "logs"
        logs.mkdir(exist_ok=True)
        m.state, m.error, m.exit_code = InstanceState.STARTING, None, None
        await self._commit(m)
        try:
            with open(logs / "stdout.log", "ab") as out, open(logs / "stderr.log", "ab") as err:
                popen = process.spawn([str(exe), *args], exe.parent, env, out, err)
        except OSError as exc:
            m.state, m.error = (
                InstanceState.FAILED,
                f"cannot start {manifest.entrypoint}: {exc.strerror or exc}",
            )
            await self._commit(m)
            raise GdosError(ErrorCode.START_FAILED, m.error) from None
        ident = process.identity_of(popen.pid) or process.Identity(popen.pid, time.time())
        m.popen, m.pid, m.create_time = popen, ident.pid, ident.create_time
        m.state, m.started_at = InstanceState.RUNNING, time.time()
        m.watcher = asyncio.create_task(self._watch(m, ident, popen))
        await self._commit(m)
        log.info("started %s (pid %d)", m.spec.name, m.pid)

    async def _watch(
        self, m: Managed, ident: process.Identity, popen: subprocess.Popen[bytes] | None
    ) -> None:
        code = await process.wait_exit(ident, popen)
        if m.pid != ident.pid:
            return  # superseded by a newer start
        m.popen, m.pid, m.create_time = None, None, None
        m.exit_code = code
        if m.state in (InstanceState.STOPPING, InstanceState.DESTROYING):
            if m.state == InstanceState.STOPPING:
                m.state = InstanceState.STOPPED
        else:
            m.state = InstanceState.EXITED
            m.error = _exit_text(code)
            log.warning("%s exited on its own: %s", m.spec.name, m.error)
        await self._commit(m)

    async def stop(self, instance_id: str) -> None:
        m = self.get(instance_id)
        async with m.lock:
            await self._stop_locked(m, InstanceState.STOPPING)

    async def _stop_locked(self, m: Managed, transition: InstanceState) -> None:
        ident = m.identity
        proc = process.find(ident) if ident else None
        if proc is None:
            if m.state in ACTIVE_STATES:
                m.state, m.pid, m.create_time = InstanceState.STOPPED, None, None
            if transition == InstanceState.DESTROYING:
                m.state = transition
            await self._commit(m)
            return
        m.state = transition
        await self._commit(m)
        manifest = m.manifest
        timeout = manifest.stop_timeout if manifest else 10.0
        procs = process.tree(proc)
        if manifest and manifest.stop_entrypoint:
            await self._run_stop_command(m, manifest, timeout)
        else:
            process.terminate_tree(procs)
        left = await process.wait_gone(procs, timeout)
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

    async def _run_stop_command(self, m: Managed, manifest: Manifest, timeout: float) -> None:
        assert manifest.stop_entrypoint
        app = self.instance_dir(m.id) / "app"
        exe = process.executable(app / manifest.stop_entrypoint)
        env = {**child_environ(), **manifest.env, **m.spec.env, ENV_INSTANCE_ID: m.id}
        try:
            proc = await asyncio.create_subprocess_exec(
                str(exe),
                *manifest.stop_args,
                cwd=exe.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
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

    async def destroy(self, instance_id: str) -> None:
        m = self.instances.get(instance_id)
        if m is None:
            return  # already gone: destroy is idempotent
        async with m.lock:
            await self._stop_locked(m, InstanceState.DESTROYING)
            if not m.adopted:
                await asyncio.to_thread(shutil.rmtree, self.instance_dir(m.id), True)
            self.instances.pop(m.id, None)
            await self._commit()
            log.info("destroyed %s", m.spec.name)

    async def close(self) -> None:
        """Agent shutdown: stop watching; the services themselves keep running."""
        for m in self.instances.values():
            if m.watcher is not None:
                m.watcher.cancel()


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
