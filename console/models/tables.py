"""The console's tables: one model per resource, columns named once here."""

from __future__ import annotations

import json
from typing import Any

from console import fmt
from console.models.base import Column, Row, RowTableModel


def _load(key: str) -> Any:
    return lambda row: (row.get("load") or {}).get(key)


def _labels(row: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((row.get("labels") or {}).items()))


class NodeTableModel(RowTableModel):
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

    def tooltip(self, row: Row, col: Column) -> str | None:
        return f"{row.get('hostname')} ({row.get('id')})\nMAC {row.get('mac', '')}"


class InstanceTableModel(RowTableModel):
    """Instances with their live metrics merged in (`cpu_percent`, `rss_bytes`, `read_bps`...).

    The service adds `system_name`, `module_name` and `node_name` so the table needs no lookups.
    """

    COLUMNS = (
        Column("name", "Instance"),
        Column("system_name", "System"),
        Column("node_name", "Node"),
        Column("state", "State", colored=True),
        Column("health", "Health", colored=True),
        Column("cpu_percent", "CPU", fmt.percent, numeric=True),
        Column("rss_bytes", "RSS", fmt.size, numeric=True),
        Column("read_bps", "Read", fmt.rate, numeric=True),
        Column("write_bps", "Write", fmt.rate, numeric=True),
        Column("pid", "PID", numeric=True),
        Column("restarts", "Restarts", numeric=True),
        Column("version", "Version"),
        Column("started_at", "Started", fmt.when),
        Column("adopted", "Adopted", lambda v: "yes" if v else ""),
    )

    def tooltip(self, row: Row, col: Column) -> str | None:
        parts = [f"{row.get('name')} ({row.get('id')})"]
        if row.get("last_error"):
            parts.append(f"last error: {row['last_error']}")
        if row.get("exit_code") is not None:
            parts.append(f"exit code {row['exit_code']}")
        return "\n".join(parts)


class PackageTableModel(RowTableModel):
    COLUMNS = (
        Column("name", "Package"),
        Column("version", "Version"),
        Column("description", "Description"),
        Column("os", "OS", lambda v: str(v) if v else "any"),
        Column("size", "Size", fmt.size, numeric=True),
        Column("uploaded_at", "Uploaded", fmt.when),
        Column("sha256", "sha256", lambda v: (v or "")[:16]),
    )

    def tooltip(self, row: Row, col: Column) -> str | None:
        return json.dumps(row.get("manifest", {}), indent=2)[:2000]


class AlertRuleTableModel(RowTableModel):
    COLUMNS = (
        Column("name", "Rule"),
        Column("severity", "Severity", colored=True),
        Column(
            "condition",
            "Condition",
            get=lambda r: f"{r.get('metric')} {r.get('op')} {r.get('threshold')}",
            deps=("metric", "op", "threshold"),
        ),
        Column(
            "for_seconds", "For", lambda v: "" if v is None else f"{float(v):g} s", numeric=True
        ),
        Column(
            "scope",
            "Scope",
            get=lambda r: ", ".join(f"{k}={v}" for k, v in (r.get("scope") or {}).items()) or "all",
        ),
        Column("webhook_url", "Webhook"),
    )


class AlertTableModel(RowTableModel):
    COLUMNS = (
        Column("state", "State", colored=True),
        Column(
            "rule_name",
            "Rule",
            get=lambda r: r.get("rule_name") or r.get("rule_id"),
            deps=("rule_name", "rule_id"),
        ),
        Column("target", "Target"),
        Column(
            "value",
            "Value",
            lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v),
        ),
        Column("started_at", "Since", fmt.when),
        Column("resolved_at", "Resolved", fmt.when),
        Column(
            "acked",
            "Acknowledged",
            lambda v: "yes" if v else "",
            get=lambda r: r.get("acked_by") or r.get("acked"),
            deps=("acked", "acked_by"),
        ),
    )


class SilenceTableModel(RowTableModel):
    COLUMNS = (
        Column("rule_id", "Rule"),
        Column("target", "Target"),
        Column("starts_at", "From", fmt.when),
        Column("ends_at", "Until", fmt.when),
        Column("comment", "Comment"),
    )


class AuditTableModel(RowTableModel):
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


class UserTableModel(RowTableModel):
    KEY = "username"
    COLUMNS = (
        Column("username", "User"),
        Column("role", "Role"),
        Column("created_at", "Created", fmt.when),
    )


class BackupTableModel(RowTableModel):
    COLUMNS = (
        Column("id", "Backup"),
        Column("created_at", "Created", fmt.when),
        Column("size", "Size", fmt.size, numeric=True),
    )


class OperationStepModel(RowTableModel):
    """Steps of one system start/stop, keyed by instance id."""

    KEY = "instance_id"
    COLUMNS = (
        Column(
            "name",
            "Instance",
            get=lambda r: r.get("name") or r.get("instance_id"),
            deps=("name", "instance_id"),
        ),
        Column("level", "Order", numeric=True),
        Column("state", "State", colored=True),
        Column("error", "Error"),
    )
