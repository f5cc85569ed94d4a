"""One supervised instance as the agent remembers it: its spec, state, process and the record
that goes into the state file (and comes back from it after a restart)."""

import asyncio
import logging
import subprocess
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from agent.executor import process, releases, states
from agent.executor.health import HealthMonitor
from agent.executor.releases import Release
from agent.executor.restart import Backoff
from agent.executor.states import ProcessState
from protocol.manifest import Manifest
from protocol.messages import InstanceReport, InstanceSpec
from protocol.states import HealthState

log = logging.getLogger(__name__)


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # change_state(error=KEEP): the error stays as it is


@dataclass
class Managed:
    spec: InstanceSpec
    manifest: Manifest | None = None
    state: ProcessState = ProcessState.DEPLOYING  # changed through change_state only
    pid: int | None = None
    create_time: float | None = None
    cmdline: list[str] | None = None  # recorded for processes found rather than spawned
    started_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    restarts: int = 0
    health: HealthState = HealthState.UNKNOWN
    health_detail: str | None = None
    adopted: bool = False
    user: str | None = None  # the account its process runs as (or will run as)
    # Deployed instances: the current release's name, the one current before the last switch,
    # and every release kept on disk (the current one included), least recently used first.
    release: str | None = None
    previous: str | None = None
    releases: tuple[Release, ...] = ()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    prepare_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one prepare at a time
    prepare_task: asyncio.Task[Any] | None = None  # the prepare under way (a destroy cancels it)
    popen: subprocess.Popen[bytes] | None = None
    watcher: asyncio.Task[None] | None = None
    monitor: HealthMonitor | None = None
    backoff: Backoff | None = None
    restart_task: asyncio.Task[None] | None = None
    stopping_saved: asyncio.Future[None] | None = None  # the save of `stopping`, once begun

    @property
    def id(self) -> str:
        return self.spec.instance_id

    @property
    def identity(self) -> process.Identity | None:
        if self.pid is None or self.create_time is None:
            return None
        cmdline = tuple(self.cmdline) if self.cmdline is not None else None
        return process.Identity(self.pid, self.create_time, cmdline)

    def change_state(
        self, new: ProcessState, *, error: str | Literal[_Keep.KEEP] | None = KEEP
    ) -> None:
        """The one way a state changes: checked against `states.TRANSITIONS`, logged. An
        illegal change is a bug: logged as an error and made anyway (raised when STRICT)."""
        old = self.state
        if not states.allowed(old, new):
            log.error("%s of %s: %s -> %s", states.ILLEGAL, self.spec.name, old, new)
            if states.STRICT:
                raise states.IllegalTransition(f"{self.spec.name}: {old} -> {new}")
        if error is not KEEP:
            self.error = error
        self.state = new
        if new != old:
            log.debug("%s: %s -> %s", self.spec.name, old, new)

    def kept(self, name: str | None) -> Release | None:
        return next((r for r in self.releases if r.name == name), None)

    def forget_process(self) -> None:
        """The process is gone (or no longer ours): nothing may be signalled by its identity."""
        self.popen, self.pid, self.create_time, self.cmdline = None, None, None, None

    def report(self) -> InstanceReport:
        return InstanceReport(
            instance_id=self.id,
            state=states.on_wire(self.state),
            pid=self.pid,
            create_time=self.create_time,
            started_at=self.started_at,
            exit_code=self.exit_code,
            error=self.error,
            restarts=self.restarts,
            health=self.health,
            adopted=self.adopted,
            health_detail=self.health_detail,
            user=self.user,
            version=self.spec.package.version if self.spec.package else None,
            release=self.release,
        )

    def record(self) -> dict[str, Any]:
        """What the state file keeps (the report's fields but health, which is re-probed after
        an agent restart). Spec, manifest and releases go in as the structs they are: the
        state file's encoder writes them as it would their dicts, and nothing is kept for it."""
        backoff = self.state == ProcessState.BACKOFF
        return {
            "spec": self.spec,
            "manifest": self.manifest,
            "cmdline": self.cmdline,
            # BACKOFF is written as older agents wrote it, so that either can read the file.
            "restart_pending": backoff,
            "state": ProcessState.EXITED.value if backoff else self.state.value,
            "pid": self.pid,
            "create_time": self.create_time,
            "started_at": self.started_at,
            "exit_code": self.exit_code,
            "error": self.error,
            "restarts": self.restarts,
            "adopted": self.adopted,
            "user": self.user,
            "release": self.release,
            "previous_release": self.previous,
            "releases": [r.record() for r in self.releases],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Managed":
        manifest = record.get("manifest")
        state = ProcessState(record.get("state", "stopped"))
        if state == ProcessState.EXITED and record.get("restart_pending"):
            state = ProcessState.BACKOFF
        spec = InstanceSpec.from_data(record["spec"])
        return cls(
            spec=spec,
            manifest=releases.shared(Manifest.from_data(manifest)) if manifest else None,
            state=state,
            pid=record.get("pid"),
            create_time=record.get("create_time"),
            cmdline=record.get("cmdline"),
            started_at=record.get("started_at"),
            exit_code=record.get("exit_code"),
            error=record.get("error"),
            restarts=record.get("restarts", 0),
            adopted=record.get("adopted", False),
            user=record.get("user"),
            release=record.get("release"),
            previous=record.get("previous_release"),
            releases=tuple(
                Release.from_record(r, spec.package) for r in record.get("releases") or ()
            ),
        )
