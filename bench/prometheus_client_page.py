"""The master's `GET /metrics` page written with `prometheus_client` (a custom collector and
`generate_latest`), the way the library intends: what bench.libraries measures against the
hand-written `master.services.prometheus`. Same families, labels and values."""

import os
from collections.abc import Iterator, Sequence
from typing import Any

import psutil
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from master.services import prometheus as page

NODE_LABELS = ("node_id", "hostname")
INSTANCE_LABELS = ("instance_id", "name", "node_id", "system_id")
Row = tuple[list[str], list[float]]  # label values, latest sample


def render(svc: Any) -> bytes:
    return generate_latest(GdosCollector(svc))


class GdosCollector(Collector):
    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        svc = self.svc
        node_rows, instance_rows = page.latest_samples(svc)
        hostnames = svc.directory.hostnames
        nodes = [([n, hostnames.get(n) or ""], v) for n, v in node_rows]
        instances = [([i.id, i.name, i.node_id, i.system_id], v) for i, v in instance_rows]
        up = GaugeMetricFamily(
            "gdos_node_up", "1 while the node's agent is connected", labels=NODE_LABELS
        )
        for nid, host in sorted(svc.directory.hostnames.items()):
            up.add_metric([nid, host], 1.0 if svc.agents.is_online(nid) else 0.0)
        yield up
        yield from columns(page.NODE_SERIES, NODE_LABELS, nodes)
        running = GaugeMetricFamily(
            "gdos_instance_running", "1 while the instance is running", labels=INSTANCE_LABELS
        )
        for i in list(svc.directory.instances.values()):
            running.add_metric(
                [i.id, i.name, i.node_id, i.system_id], 1.0 if i.state == "running" else 0.0
            )
        yield running
        yield from columns(page.INSTANCE_SERIES, INSTANCE_LABELS, instances)
        for name, value in page._master_values(svc).items():
            kind, help_text = page.MASTER_SERIES[name]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=value)
        firing = GaugeMetricFamily("gdos_alerts_firing", "alerts firing now", labels=("severity",))
        for severity, n in sorted(svc.alerts.firing_by_severity().items()):
            firing.add_metric([severity], n)
        yield firing
        lag = svc.loop_lag
        yield HistogramMetricFamily(
            "gdos_master_event_loop_delay_seconds",
            "how late the master's event loop ran a timer, every sample since start",
            buckets=[(page.le_label(bound), n) for bound, n in lag.cumulative()],
            sum_value=lag.total,
        )
        proc = psutil.Process(os.getpid())
        with proc.oneshot():
            cpu = proc.cpu_times()
            yield GaugeMetricFamily(
                "process_resident_memory_bytes", "master resident memory", proc.memory_info().rss
            )
            yield CounterMetricFamily(
                "process_cpu_seconds_total", "master CPU time", cpu.user + cpu.system
            )
            yield GaugeMetricFamily(
                "process_start_time_seconds", "master start time", proc.create_time()
            )


def columns(
    series: Sequence[tuple[str, str]], labels: Sequence[str], rows: list[Row]
) -> Iterator[Metric]:
    for column, (name, help_text) in enumerate(series):
        family = GaugeMetricFamily(name, help_text, labels=labels)
        for values, sample in rows:
            family.add_metric(values, round(sample[column], 4))  # float32: as the page rounds
        yield family
