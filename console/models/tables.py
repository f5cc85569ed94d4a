"""The console's tables: one model per resource, columns named once here."""

from __future__ import annotations

import json
from typing import Any

from console import fmt
from console.models.base import RowTableModel
from console.models.cells import Column, Row
from console.models.rows import (
    AlertRow,
    AlertRuleRow,
    InstanceRow,
    NodeRow,
    PackageRow,
    ReleaseRow,
    SilenceRow,
    StepRow,
)

DRIFT_HELP = (
    "its module's version, env or args differ from what it runs: "
    "a rollout or an upgrade brings the version, a restart the env and args"
)


def _load(key: str) -> Any:
    return lambda row: (row.get("load") or {}).get(key)


def _labels(row: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((row.get("labels") or {}).items()))


class NodeTableModel(RowTableModel[NodeRow]):
    COLUMNS = (
        Column("hostname", "Host"),
        Column("status", "Status", colored=True),
        Column("ip", "IP"),
        Column("cpu", "CPU", fmt.percent, get=_load("cpu_percent"), numeric=True, deps=("load",)),
        Column(
            "mem", "Memory", fmt.percent, get=_load("mem_percent"), numeric=True, deps=("load",)
        ),
        Column(
            "disk", "Disk", fmt.percent, get=_load("disk_percent"), numeric=True, deps=("load",)
        ),
        Column(
            "load1",
            "Load",
            lambda v: "" if v is None else f"{v:.2f}",
            get=_load("load1"),
            deps=("load",),
            numeric=True,
        ),
        Column("cpu_count", "Cores", numeric=True),
        Column("mem_total", "RAM", fmt.size, numeric=True),
        Column(
            "os",
            "OS",
            get=lambda r: f"{r.get('os', '')}/{r.get('arch', '')}".strip("/"),
            deps=("os", "arch"),
        ),
        Column("agent_version", "Agent"),
        Column("labels", "Labels", get=_labels),
        Column("last_seen", "Last seen", fmt.ago),
    )

    def tooltip(self, row: NodeRow, col: Column) -> str | None:
        return f"{row.get('hostname')} ({row.get('id')})\nMAC {row.get('mac', '')}"


def _user(v: Any) -> str:
    return "" if not v else f"{v} (!)" if v == "root" else str(v)  # root is marked


def _health(row: Row) -> str:
    """healthy / unhealthy; "no check" when its package has none; "—" while unknown."""
    health = row.get("health")
    if health in ("healthy", "unhealthy"):
        return str(health)
    return "no check" if row.get("health_check") is False else "—"


class InstanceTableModel(RowTableModel[InstanceRow]):
    """Instances; CPU, RSS and IO are live columns (`set_live` with `metrics:<id>` samples).

    The service adds `system_name`, `module_name`, `node_name` and `health_check` (whether its
    package has a health check, when known) so the table needs no lookups.
    """

    COLUMNS = (
        Column("name", "Instance"),
        Column("system_name", "System"),
        Column("node_name", "Node"),
        Column("state", "State", colored=True),
        Column("health", "Health", get=_health, deps=("health", "health_check"), colored=True),
        Column("cpu_percent", "CPU", fmt.percent, numeric=True, live=True),
        Column("rss_bytes", "RSS", fmt.size, numeric=True, live=True),
        Column("read_bps", "Read", fmt.rate, numeric=True, live=True),
        Column("write_bps", "Write", fmt.rate, numeric=True, live=True),
        Column("pid", "PID", numeric=True),
        Column("user", "User", _user, colored=True, tooltip="the account its process runs as"),
        Column("restarts", "Restarts", numeric=True),
        Column("version", "Version"),
        Column(
            "drift",
            "Drift",
            get=lambda r: "drift" if r.get("drift") else "",
            colored=True,
            tooltip=DRIFT_HELP,
        ),
        Column("started_at", "Started", fmt.when),
        Column("adopted", "Adopted", lambda v: "yes" if v else ""),
    )

    def tooltip(self, row: InstanceRow, col: Column) -> str | None:
        parts = [f"{row.get('name')} ({row.get('id')})"]
        if row.get("last_error"):
            parts.append(f"last error: {row['last_error']}")
        if row.get("health_detail"):
            parts.append(f"health: {row['health_detail']}")
        if row.get("exit_code") is not None:
            parts.append(f"exit code {row['exit_code']}")
        if row.get("user") == "root":
            parts.append("runs as root: it can do anything on its node")
        if row.get("drift"):
            parts.append(f"drift: {DRIFT_HELP}")
        if row.get("previous_version"):
            parts.append(f"ran {row['previous_version']} before")
        live = self.live(str(row.get("id")))
        if live and live.get("threads"):
            parts.append(f"{live['threads']} threads")
        return "\n".join(parts)


class PackageTableModel(RowTableModel[PackageRow]):
    COLUMNS = (
        Column("name", "Package"),
        Column("version", "Version"),
        Column("description", "Description"),
        Column("os", "OS", lambda v: str(v) if v else "any"),
        Column("size", "Size", fmt.size, numeric=True),
        Column("uploaded_at", "Uploaded", fmt.when),
        Column("sha256", "sha256", lambda v: (v or "")[:16]),
    )

    def tooltip(self, row: PackageRow, col: Column) -> str | None:
        return json.dumps(row.get("manifest", {}), indent=2)[:2000]


def _number(v: Any) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _seconds(v: Any) -> str:
    if v is None:
        return ""
    secs = float(v)
    if secs < 120:
        return f"{secs:g} s"
    if secs < 7200:
        return f"{secs / 60:.0f} min"
    return f"{secs / 3600:.1f} h"


def _condition(row: Row) -> str:
    threshold = row.get("threshold")
    if row.get("metric") == "rss_bytes" and isinstance(threshold, int | float):
        threshold = fmt.size(threshold)
    return f"{row.get('metric')} {row.get('op')} {_number(threshold)}"


class AlertRuleTableModel(RowTableModel[AlertRuleRow]):
    """Rules; the service adds `scope_text` (the scope's name, not its id)."""

    COLUMNS = (
        Column("name", "Rule"),
        Column("enabled", "Enabled", lambda v: "yes" if v else "off"),
        Column("severity", "Severity", colored=True),
        Column("condition", "Condition", get=_condition, deps=("metric", "op", "threshold")),
        Column("for_seconds", "For", _seconds, numeric=True),
        Column(
            "scope_text",
            "Scope",
            get=lambda r: r.get("scope_text") or "all",
            deps=("scope_text", "scope"),
        ),
        Column("resolve_for_seconds", "Resolves after", _seconds, numeric=True),
        Column("webhook_url", "Webhook"),
    )

    def tooltip(self, row: AlertRuleRow, col: Column) -> str | None:
        return (
            f"{row.get('name')} ({row.get('id')})\nhysteresis {_number(row.get('hysteresis'))}, "
            f"created {fmt.when(row.get('created_at'))}"
        )


def _value(row: Row) -> str:
    value = row.get("value")
    if row.get("metric") == "rss_bytes" and isinstance(value, int | float):
        return fmt.size(value)
    if row.get("metric") == "cpu_percent" and isinstance(value, int | float):
        return fmt.percent(value)
    return _number(value)


class AlertTableModel(RowTableModel[AlertRow]):
    COLUMNS = (
        Column("state", "State", colored=True),
        Column("severity", "Severity", colored=True),
        Column(
            "rule_name",
            "Rule",
            get=lambda r: r.get("rule_name") or r.get("rule_id"),
            deps=("rule_name", "rule_id"),
        ),
        Column(
            "target_name",
            "Target",
            get=lambda r: (
                f"{r.get('target_kind', '')} {r.get('target_name') or r.get('target_id') or r.get('target', '')}".strip()
            ),
            deps=("target_kind", "target_name", "target_id", "target"),
        ),
        Column("value", "Value", get=_value, deps=("value", "metric")),
        Column("started_at", "Since", fmt.when),
        Column("resolved_at", "Resolved", fmt.when),
        Column(
            "acked",
            "Acknowledged",
            get=lambda r: r.get("acked_by") or ("yes" if r.get("acked") else ""),
            deps=("acked", "acked_by"),
        ),
        Column("silenced", "Silenced", lambda v: "silenced" if v else ""),
    )

    def tooltip(self, row: AlertRow, col: Column) -> str | None:
        parts = [f"alert {row.get('id')} of rule {row.get('rule_name') or row.get('rule_id')}"]
        if row.get("resolved_value") is not None:
            parts.append(f"resolved at {_number(row.get('resolved_value'))}")
        if row.get("duration_seconds") is not None:
            parts.append(f"lasted {_seconds(row.get('duration_seconds'))}")
        if row.get("acked_at"):
            parts.append(f"acknowledged {fmt.when(row.get('acked_at'))}")
        return "\n".join(parts)


def _matcher(row: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((row.get("matcher") or {}).items()))


class SilenceTableModel(RowTableModel[SilenceRow]):
    """Silences; the service adds `matcher_text` (names instead of ids where it knows them)."""

    COLUMNS = (
        Column(
            "matcher_text",
            "Matches",
            get=lambda r: r.get("matcher_text") or _matcher(r),
            deps=("matcher_text", "matcher"),
        ),
        Column("active", "Active", lambda v: "active" if v else "not yet / over"),
        Column("starts_at", "From", fmt.when),
        Column("ends_at", "Until", fmt.when),
        Column("comment", "Comment"),
        Column("created_by", "By"),
    )


class AuditTableModel(RowTableModel[Row]):
    KEY = "_key"
    COLUMNS = (
        Column("ts", "Time", fmt.when),
        Column("actor", "Actor"),
        Column("action", "Action"),
        Column("target", "Target"),
        Column("result", "Result", colored=True),
        Column("source_ip", "From"),
        Column("detail", "Detail", lambda v: json.dumps(v, separators=(",", ":")) if v else ""),
    )


class UserTableModel(RowTableModel[Row]):
    KEY = "username"
    COLUMNS = (
        Column("username", "User"),
        Column("role", "Role"),
        Column("created_at", "Created", fmt.when),
    )


class BackupTableModel(RowTableModel[Row]):
    COLUMNS = (
        Column("created_at", "Created", fmt.when),
        Column("kind", "Kind"),
        Column("size", "Size", fmt.size, numeric=True),
        Column("created_by", "By"),
        Column("id", "Backup"),
        Column("sha256", "sha256", lambda v: (v or "")[:16]),
        Column("schema_revision", "Schema"),
    )


def _versions(row: Row) -> str:
    """ "1.0.0 → 1.0.1" for a rollout's step; empty for a start or stop."""
    old, new = row.get("from_version"), row.get("to_version")
    return f"{old or '?'} → {new}" if new else ""


class OperationStepModel(RowTableModel[StepRow]):
    """Steps of one operation (a system's start/stop, a rollout or rollback), keyed by
    instance id."""

    KEY = "instance_id"
    COLUMNS = (
        Column(
            "name",
            "Instance",
            get=lambda r: r.get("name") or r.get("instance_id"),
            deps=("name", "instance_id"),
        ),
        Column("node_name", "Node"),
        Column("level", "Order", numeric=True),
        Column("state", "State", lambda v: str(v or "").replace("_", " "), colored=True),
        Column("started_at", "Started", fmt.when),
        Column("finished_at", "Finished", fmt.when),
        Column("batch", "Batch", numeric=True),
        Column("versions", "Version", get=_versions, deps=("from_version", "to_version")),
        Column("error", "Error"),
    )


class ReleaseTableModel(RowTableModel[ReleaseRow]):
    """A module's (or one instance's) rollouts and rollbacks, newest first."""

    KEY = "operation_id"
    COLUMNS = (
        Column("started_at", "When", fmt.when),
        Column("kind", "Kind"),
        Column("from_version", "From"),
        Column("to_version", "To"),
        Column("actor", "By"),
        Column("state", "Result", colored=True),
        Column("finished_at", "Finished", fmt.when),
        Column("error", "Error"),
    )

    def tooltip(self, row: ReleaseRow, col: Column) -> str | None:
        lines = [f"{row.get('kind')} {row.get('operation_id')}"]
        for inst in row.get("instances") or []:
            what = f"{inst.get('name') or inst.get('instance_id')}: {inst.get('from')} → "
            what += f"{inst.get('to')} {inst.get('state')}"
            lines.append(what + (f" ({inst['error']})" if inst.get("error") else ""))
        return "\n".join(lines)


class MasterTableModel(RowTableModel[Row]):
    """The masters sharing the database; the service marks the one this console is on
    (`current`)."""

    COLUMNS = (
        Column("id", "Master"),
        Column("url", "URL"),
        Column("status", "Status", colored=True),
        Column(
            "current",
            "Console",
            get=lambda r: "this console" if r.get("current") else "",
            colored=True,
            tooltip="the master this console is on",
        ),
        Column("leader", "Leader", lambda v: "leader" if v else ""),
        Column("started_at", "Started", fmt.when),
        Column("last_seen", "Last seen", fmt.ago),
        Column("nodes", "Nodes", numeric=True),
    )
