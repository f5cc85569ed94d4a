"""The Prometheus text exposition (format 0.0.4) of nodes, instances and the master itself.

Built from memory only (metrics store, directory, counters), in one pass over the series: a
scrape touches no database. Written here rather than with `prometheus_client`'s collectors,
whose per-sample formatting is several times slower at fleet scale (docs/DESIGN.md).
"""

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import psutil

from master.services.directory import InstanceInfo
from master.services.metrics import FRESH_FOR

if TYPE_CHECKING:
    from master.app import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

NODE_SERIES = (
    ("gdos_node_cpu_percent", "CPU busy, percent of all cores"),
    ("gdos_node_memory_percent", "memory in use, percent"),
    ("gdos_node_disk_percent", "disk in use where the agent keeps its work dir, percent"),
    ("gdos_node_network_receive_bytes_per_second", "network receive rate, loopback excluded"),
    ("gdos_node_network_transmit_bytes_per_second", "network transmit rate, loopback excluded"),
    ("gdos_node_load1", "1-minute load average"),
)
INSTANCE_SERIES = (
    ("gdos_instance_cpu_percent", "CPU of the instance's process tree, percent of one core"),
    ("gdos_instance_rss_bytes", "resident memory of the instance's process tree"),
    ("gdos_instance_read_bytes_per_second", "storage reads of the process tree"),
    ("gdos_instance_write_bytes_per_second", "storage writes of the process tree"),
    ("gdos_instance_threads", "threads of the process tree"),
)

MASTER_SERIES = {  # name: (type, help); the values come from _master_values
    "gdos_master_connected_agents": ("gauge", "agents connected to this master"),
    "gdos_master_agent_messages_total": ("counter", "messages received from agents"),
    "gdos_master_metrics_messages_total": ("counter", "metrics messages ingested"),
    "gdos_master_metrics_samples_total": ("counter", "samples stored (node + instance rows)"),
    "gdos_master_metrics_rejected_samples_total": (
        "counter",
        "instance rows dropped: the sending node does not run that instance",
    ),
    "gdos_master_metrics_ingest_rate": ("gauge", "samples stored per second, recent"),
    "gdos_master_metrics_series": ("gauge", "series held in memory"),
    "gdos_master_metrics_series_max": ("gauge", "the series cap (memory ceiling)"),
    "gdos_master_metrics_series_evicted_total": ("counter", "series evicted at the cap"),
    "gdos_master_metrics_buffer_bytes": ("gauge", "bytes of sample buffers allocated"),
    "gdos_master_event_subscribers": ("gauge", "console event-stream connections"),
    "gdos_master_event_queue_depth": ("gauge", "events queued for subscribers, all together"),
    "gdos_master_event_queue_depth_max": ("gauge", "events queued for the slowest subscriber"),
    "gdos_master_events_published_total": ("counter", "events published to subscribers"),
    "gdos_master_webhook_queue_depth": (
        "gauge",
        "webhook notifications queued or waiting to retry",
    ),
    "gdos_master_webhook_sent_total": ("counter", "webhook notifications delivered"),
    "gdos_master_webhook_failed_total": ("counter", "webhook notifications given up"),
    "gdos_master_webhook_dropped_total": ("counter", "webhook notifications dropped (queue full)"),
    "gdos_master_event_loop_lag_seconds": (
        "gauge",
        "worst lateness of the master's event loop over the last 10 s",
    ),
    "gdos_master_alerts_fired_total": ("counter", "alerts fired since start"),
}

Samples = Iterable[tuple[str, float]]  # (label set, value)


def render(svc: "Services") -> str:
    page = _Page()
    node_rows, instance_rows = latest_samples(svc)
    hostnames = svc.directory.hostnames
    nodes = [(_labels(node_id=n, hostname=hostnames.get(n)), v) for n, v in node_rows]
    instances = [(_instance_labels(i), v) for i, v in instance_rows]
    page.family("gdos_node_up", "gauge", "1 while the node's agent is connected", _node_up(svc))
    page.columns(NODE_SERIES, nodes)
    page.family("gdos_instance_running", "gauge", "1 while the instance is running", _running(svc))
    page.columns(INSTANCE_SERIES, instances)
    for name, value in _master_values(svc).items():
        kind, help_text = MASTER_SERIES[name]
        page.family(name, kind, help_text, [("", value)])
    page.family("gdos_alerts_firing", "gauge", "alerts firing now", _alerts_firing(svc))
    page.histogram(
        "gdos_master_event_loop_delay_seconds",
        "how late the master's event loop ran a timer, every sample since start",
        svc.loop_lag.cumulative(),
        svc.loop_lag.total,
    )
    _process(page)
    return page.text()


class _Page:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Samples) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.extend(f"{name}{labels} {_num(value)}" for labels, value in samples)

    def histogram(
        self, name: str, help_text: str, cumulative: list[tuple[float, int]], total: float
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for bound, count in cumulative:
            self.lines.append(f'{name}_bucket{{le="{le_label(bound)}"}} {count}')
        self.lines.append(f"{name}_sum {total!r}")
        self.lines.append(f"{name}_count {cumulative[-1][1]}")

    def columns(
        self, series: Iterable[tuple[str, str]], rows: list[tuple[str, list[float]]]
    ) -> None:
        """One gauge per column of the latest samples."""
        for column, (name, help_text) in enumerate(series):
            self.family(name, "gauge", help_text, ((lbl, vals[column]) for lbl, vals in rows))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def latest_samples(
    svc: "Services",
) -> tuple[list[tuple[str, list[float]]], list[tuple[InstanceInfo, list[float]]]]:
    """Each node's (by id) and instance's latest sample, unless stale (stopped, gone quiet)."""
    now = time.time()
    nodes: list[tuple[str, list[float]]] = []
    instances: list[tuple[InstanceInfo, list[float]]] = []
    for key, series in svc.metrics.store.items():
        latest = series.latest()
        if latest is None or now - latest[0] > FRESH_FOR:
            continue
        kind, ident = key[0], key[2:]
        if kind == "n":
            nodes.append((ident, latest[1]))
        elif (info := svc.directory.instances.get(ident)) is not None:
            instances.append((info, latest[1]))
    return nodes, instances


def _master_values(svc: "Services") -> dict[str, float]:
    agents, metrics, store, hub = svc.agents, svc.metrics, svc.metrics.store, svc.hub
    notifier, alerts = svc.notifier, svc.alerts
    depths = hub.queue_depths()
    return {
        "gdos_master_connected_agents": len(agents.links),
        "gdos_master_agent_messages_total": agents.messages_in,
        "gdos_master_metrics_messages_total": metrics.messages,
        "gdos_master_metrics_samples_total": metrics.samples,
        "gdos_master_metrics_rejected_samples_total": metrics.rejected,
        "gdos_master_metrics_ingest_rate": metrics.rate,
        "gdos_master_metrics_series": len(store),
        "gdos_master_metrics_series_max": store.max_series,
        "gdos_master_metrics_series_evicted_total": store.evicted,
        "gdos_master_metrics_buffer_bytes": store.allocated_bytes(),
        "gdos_master_event_subscribers": hub.subscriber_count,
        "gdos_master_event_queue_depth": sum(depths),
        "gdos_master_event_queue_depth_max": max(depths, default=0),
        "gdos_master_events_published_total": hub.published,
        "gdos_master_webhook_queue_depth": notifier.depth,
        "gdos_master_webhook_sent_total": notifier.sent,
        "gdos_master_webhook_failed_total": notifier.failed,
        "gdos_master_webhook_dropped_total": notifier.dropped,
        "gdos_master_event_loop_lag_seconds": svc.loop_lag.worst(10.0),
        "gdos_master_alerts_fired_total": alerts.fired,
    }


def _node_up(svc: "Services") -> Samples:
    for nid, host in sorted(svc.directory.hostnames.items()):
        yield _labels(node_id=nid, hostname=host), 1.0 if svc.agents.is_online(nid) else 0.0


def _running(svc: "Services") -> Samples:
    for i in list(svc.directory.instances.values()):  # a snapshot: ingest goes on meanwhile
        yield _instance_labels(i), 1.0 if i.state == "running" else 0.0


def _alerts_firing(svc: "Services") -> Samples:
    for severity, n in sorted(svc.alerts.firing_by_severity().items()):
        yield _labels(severity=severity), n


def _process(page: _Page) -> None:
    proc = psutil.Process(os.getpid())
    with proc.oneshot():
        cpu = proc.cpu_times()
        rss, started = proc.memory_info().rss, proc.create_time()
    page.family("process_resident_memory_bytes", "gauge", "master resident memory", [("", rss)])
    cpu_seconds = [("", cpu.user + cpu.system)]
    page.family("process_cpu_seconds_total", "counter", "master CPU time", cpu_seconds)
    page.family("process_start_time_seconds", "gauge", "master start time", [("", started)])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str | None) -> str:
    inner = ",".join(f'{k}="{_escape(v or "")}"' for k, v in labels.items())
    return "{" + inner + "}"


# Label sets change rarely; 20,000 instances' worth are built once, not at every scrape.
_instance_label_cache: dict[tuple[str, str, str, str], str] = {}


def _instance_labels(i: InstanceInfo) -> str:
    key = (i.id, i.name, i.node_id, i.system_id)
    text = _instance_label_cache.get(key)
    if text is None:
        if len(_instance_label_cache) > 100_000:
            _instance_label_cache.clear()  # renamed and removed instances: start over
        text = _instance_label_cache[key] = _labels(
            instance_id=i.id, name=i.name, node_id=i.node_id, system_id=i.system_id
        )
    return text


def le_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _num(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 4))
