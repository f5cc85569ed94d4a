"""The Prometheus text exposition (format 0.0.4) of nodes, instances and the master itself.

Built from memory only (metrics store, directory, counters); one pass over the series, so a
scrape of 20,000 instances costs a fraction of a second and touches no database.
"""

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import psutil

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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str | None) -> str:
    inner = ",".join(f'{k}="{_escape(v or "")}"' for k, v in labels.items())
    return "{" + inner + "}"


# Label sets change rarely; 20,000 instances' worth are built once, not at every scrape.
_instance_labels: dict[tuple[str, str, str, str], str] = {}


def _instance_labels_of(iid: str, name: str, node_id: str, system_id: str) -> str:
    key = (iid, name, node_id, system_id)
    text = _instance_labels.get(key)
    if text is None:
        if len(_instance_labels) > 100_000:
            _instance_labels.clear()  # renamed and removed instances: start over
        text = _instance_labels[key] = _labels(
            instance_id=iid, name=name, node_id=node_id, system_id=system_id
        )
    return text


def _num(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 4))


class _Page:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.extend(f"{name}{labels} {_num(value)}" for labels, value in samples)

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [("", value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(svc: "Services") -> str:
    page = _Page()
    now = time.time()
    directory = svc.directory
    store = svc.metrics.store

    nodes: list[tuple[str, list[float]]] = []
    instances: list[tuple[str, list[float]]] = []
    for key, series in store.items():
        latest = series.latest()
        if latest is None or now - latest[0] > FRESH_FOR:
            continue  # a stopped instance or a node gone quiet: no stale numbers
        kind, ident = key[0], key[2:]
        if kind == "n":
            nodes.append(
                (_labels(node_id=ident, hostname=directory.hostnames.get(ident)), latest[1])
            )
        else:
            info = directory.instances.get(ident)
            if info is None:
                continue
            labels = _instance_labels_of(ident, info.name, info.node_id, info.system_id)
            instances.append((labels, latest[1]))

    page.family(
        "gdos_node_up",
        "gauge",
        "1 while the node's agent is connected",
        (
            (_labels(node_id=nid, hostname=host), 1.0 if svc.agents.is_online(nid) else 0.0)
            for nid, host in sorted(directory.hostnames.items())
        ),
    )
    for column, (name, help_text) in enumerate(NODE_SERIES):
        page.family(name, "gauge", help_text, ((lbl, vals[column]) for lbl, vals in nodes))
    page.family(
        "gdos_instance_running",
        "gauge",
        "1 while the instance is running",
        (
            (
                _instance_labels_of(i.id, i.name, i.node_id, i.system_id),
                1.0 if i.state == "running" else 0.0,
            )
            for i in list(directory.instances.values())
        ),
    )
    for column, (name, help_text) in enumerate(INSTANCE_SERIES):
        page.family(name, "gauge", help_text, ((lbl, vals[column]) for lbl, vals in instances))

    metrics, hub, notifier, alerts = svc.metrics, svc.hub, svc.notifier, svc.alerts
    depths = hub.queue_depths()
    page.one(
        "gdos_master_connected_agents",
        "gauge",
        "agents connected to this master",
        len(svc.agents.links),
    )
    page.one(
        "gdos_master_agent_messages_total",
        "counter",
        "messages received from agents",
        svc.agents.messages_in,
    )
    page.one(
        "gdos_master_metrics_messages_total",
        "counter",
        "metrics messages ingested",
        metrics.messages,
    )
    page.one(
        "gdos_master_metrics_samples_total",
        "counter",
        "samples stored (node + instance rows)",
        metrics.samples,
    )
    page.one(
        "gdos_master_metrics_rejected_samples_total",
        "counter",
        "instance rows dropped: the sending node does not run that instance",
        metrics.rejected,
    )
    page.one(
        "gdos_master_metrics_ingest_rate",
        "gauge",
        "samples stored per second, recent",
        metrics.rate,
    )
    page.one("gdos_master_metrics_series", "gauge", "series held in memory", len(store))
    page.one(
        "gdos_master_metrics_series_max",
        "gauge",
        "the series cap (memory ceiling)",
        store.max_series,
    )
    page.one(
        "gdos_master_metrics_series_evicted_total",
        "counter",
        "series evicted at the cap",
        store.evicted,
    )
    page.one(
        "gdos_master_metrics_buffer_bytes",
        "gauge",
        "bytes of sample buffers allocated",
        store.allocated_bytes(),
    )
    page.one(
        "gdos_master_event_subscribers",
        "gauge",
        "console event-stream connections",
        hub.subscriber_count,
    )
    page.one(
        "gdos_master_event_queue_depth",
        "gauge",
        "events queued for subscribers, all together",
        sum(depths),
    )
    page.one(
        "gdos_master_event_queue_depth_max",
        "gauge",
        "events queued for the slowest subscriber",
        max(depths, default=0),
    )
    page.one(
        "gdos_master_events_published_total",
        "counter",
        "events published to subscribers",
        hub.published,
    )
    page.one(
        "gdos_master_webhook_queue_depth",
        "gauge",
        "webhook notifications queued or waiting to retry",
        notifier.depth,
    )
    page.one(
        "gdos_master_webhook_sent_total",
        "counter",
        "webhook notifications delivered",
        notifier.sent,
    )
    page.one(
        "gdos_master_webhook_failed_total",
        "counter",
        "webhook notifications given up",
        notifier.failed,
    )
    page.one(
        "gdos_master_webhook_dropped_total",
        "counter",
        "webhook notifications dropped (queue full)",
        notifier.dropped,
    )
    page.one(
        "gdos_master_event_loop_lag_seconds",
        "gauge",
        "worst lateness of the master's event loop over the last 10 s",
        max(list(alerts.loop_lags), default=0.0),
    )
    page.one("gdos_master_alerts_fired_total", "counter", "alerts fired since start", alerts.fired)
    page.family(
        "gdos_alerts_firing",
        "gauge",
        "alerts firing now",
        ((_labels(severity=sev), n) for sev, n in sorted(alerts.firing_by_severity().items())),
    )
    proc = psutil.Process(os.getpid())
    with proc.oneshot():
        cpu = proc.cpu_times()
        page.one(
            "process_resident_memory_bytes",
            "gauge",
            "master resident memory",
            proc.memory_info().rss,
        )
        page.one("process_cpu_seconds_total", "counter", "master CPU time", cpu.user + cpu.system)
        page.one("process_start_time_seconds", "gauge", "master start time", proc.create_time())
    return page.text()
