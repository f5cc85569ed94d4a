"""Response bodies of endpoints that `protocol/rest.py` does not describe yet (API.md contract).

These are read leniently (extra fields kept, most fields optional) because the master side of
metrics, alerts, logs, backups and batch operations is written in parallel with the console;
when `protocol/rest.py` gains the real classes the client can switch to them.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class InstanceSample(_Lenient):
    ts: float | str = 0.0
    cpu_percent: float = 0.0
    rss_bytes: float = 0.0
    read_bps: float = 0.0
    write_bps: float = 0.0
    threads: int = 0


class NodeSample(_Lenient):
    ts: float | str = 0.0
    cpu_percent: float = 0.0
    mem_percent: float = 0.0
    net_rx_bps: float = 0.0
    net_tx_bps: float = 0.0


class OperationStep(_Lenient):
    instance_id: str
    state: str
    error: str | None = None


class Operation(_Lenient):
    id: str
    kind: str = ""
    state: str = "running"
    steps: list[OperationStep] = Field(default_factory=list)


class OperationRef(_Lenient):
    operation_id: str


class AlertRule(_Lenient):
    id: str
    name: str
    metric: str
    op: str
    threshold: float | str
    for_seconds: float = 0.0
    scope: dict[str, str] = Field(default_factory=dict)
    severity: str = "warning"
    webhook_url: str | None = None


class Alert(_Lenient):
    id: str
    rule_id: str | None = None
    target: str = ""
    value: Any = None
    state: str = "firing"
    started_at: str | None = None
    resolved_at: str | None = None
    acked: bool = False
    acked_by: str | None = None


class Silence(_Lenient):
    id: str
    rule_id: str | None = None
    target: str | None = None
    starts_at: str | None = None
    ends_at: str | None = None
    comment: str = ""


class LogFile(_Lenient):
    name: str
    path: str = ""
    size: int = 0


class Backup(_Lenient):
    id: str
    size: int = 0
    created_at: str | None = None
