"""Alerts and silences as the engine holds them in memory between database writes."""

from dataclasses import dataclass, field
from typing import Any

from master.db import models
from master.db.models import new_id


@dataclass(slots=True)
class AlertRecord:
    """A firing (or just resolved) alert, as the engine holds it until it is written."""

    rule_id: str | None
    rule_name: str
    metric: str
    severity: str
    target_kind: str
    target_id: str
    target_name: str
    node_id: str | None
    system_id: str | None
    value: Any
    started_at: float
    silenced: bool = False
    notified: bool = False
    state: str = "firing"
    resolved_value: Any = None
    resolved_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    id: str = field(default_factory=new_id)

    @property
    def duration(self) -> float | None:
        return None if self.resolved_at is None else self.resolved_at - self.started_at

    def columns(self) -> dict[str, Any]:
        """The row's column values as the alert is now."""
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "metric": self.metric,
            "severity": self.severity,
            "target_kind": self.target_kind,
            "target_id": self.target_id,
            "target_name": self.target_name,
            "node_id": self.node_id,
            "system_id": self.system_id,
            "value": self.value,
            "resolved_value": self.resolved_value,
            "state": self.state,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
            "duration": self.duration,
            "acked_at": self.acked_at,
            "acked_by": self.acked_by,
            "silenced": self.silenced,
            "notified": self.notified,
        }

    @classmethod
    def from_row(cls, row: models.Alert) -> "AlertRecord":
        return cls(
            id=row.id,
            rule_id=row.rule_id,
            rule_name=row.rule_name,
            metric=row.metric,
            severity=row.severity,
            target_kind=row.target_kind,
            target_id=row.target_id,
            target_name=row.target_name,
            node_id=row.node_id,
            system_id=row.system_id,
            value=row.value,
            started_at=row.started_at,
            silenced=row.silenced,
            notified=row.notified,
            state=row.state,
            resolved_value=row.resolved_value,
            resolved_at=row.resolved_at,
            acked_at=row.acked_at,
            acked_by=row.acked_by,
        )

    def resolution(self) -> dict[str, Any]:
        """The columns a resolution writes (an ack is the API's to write, on any master)."""
        return {
            "state": self.state,
            "resolved_value": self.resolved_value,
            "resolved_at": self.resolved_at,
            "duration": self.duration,
        }


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    id: str
    matcher: dict[str, str]
    starts_at: float
    ends_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, a: AlertRecord) -> bool:
        for key, want in self.matcher.items():
            if key == "instance_id":
                got: str | None = a.target_id if a.target_kind == "instance" else None
            elif key == "rule_id":
                got = a.rule_id
            else:
                got = getattr(a, key, None)
            if got != want:
                return False
        return True
