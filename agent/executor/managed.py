"""One supervised instance as the agent remembers it: its spec, state, process and the record
that goes into the state file (and comes back from it after a restart)."""

import asyncio
import subprocess
from dataclasses import dataclass, field
from typing import Any

from agent.executor import process
from agent.executor.health import HealthMonitor
from agent.executor.restart import Backoff
from protocol.manifest import Manifest
from protocol.messages import InstanceReport, InstanceSpec
from protocol.states import HealthState, InstanceState


@dataclass
class Managed:
    spec: InstanceSpec
    manifest: Manifest | None = None
    state: InstanceState = InstanceState.DEPLOYING
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
    restart_pending: bool = False  # an automatic restart is scheduled (survives an agent restart)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    popen: subprocess.Popen[bytes] | None = None
    watcher: asyncio.Task[None] | None = None
    monitor: HealthMonitor | None = None
    backoff: Backoff | None = None
    restart_task: asyncio.Task[None] | None = None
    stopping_saved: asyncio.Future[None] | None = None  # the save of `stopping`, once begun
    _static: dict[str, Any] | None = None  # spec and manifest, dumped once

    @property
    def id(self) -> str:
        return self.spec.instance_id

    @property
    def identity(self) -> process.Identity | None:
        if self.pid is None or self.create_time is None:
            return None
        cmdline = tuple(self.cmdline) if self.cmdline is not None else None
        return process.Identity(self.pid, self.create_time, cmdline)

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
            health_detail=self.health_detail,
            user=self.user,
        )

    def record(self) -> dict[str, Any]:
        """What the state file keeps (the report's fields but health, which is re-probed after
        an agent restart). Built field by field: a save of a host's table builds every record."""
        if self._static is None or self._static["manifest_obj"] is not self.manifest:
            self._static = {
                "spec": self.spec.to_dict(),
                "manifest": self.manifest.to_dict() if self.manifest else None,
                "manifest_obj": self.manifest,
            }
        return {
            "spec": self._static["spec"],
            "manifest": self._static["manifest"],
            "cmdline": self.cmdline,
            "restart_pending": self.restart_pending,
            "state": self.state.value,
            "pid": self.pid,
            "create_time": self.create_time,
            "started_at": self.started_at,
            "exit_code": self.exit_code,
            "error": self.error,
            "restarts": self.restarts,
            "adopted": self.adopted,
            "user": self.user,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Managed":
        manifest = record.get("manifest")
        return cls(
            spec=InstanceSpec.from_data(record["spec"]),
            manifest=Manifest.from_data(manifest) if manifest else None,
            state=InstanceState(record.get("state", "stopped")),
            pid=record.get("pid"),
            create_time=record.get("create_time"),
            cmdline=record.get("cmdline"),
            started_at=record.get("started_at"),
            exit_code=record.get("exit_code"),
            error=record.get("error"),
            restarts=record.get("restarts", 0),
            adopted=record.get("adopted", False),
            user=record.get("user"),
            restart_pending=record.get("restart_pending", False),
        )
