"""The /metrics page from the master's own services in this process: every documented family,
its type, labels and latest values, as Prometheus' own parser reads them."""

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import prometheus_client_page
from master.app import Services
from master.services import prometheus
from master.services.metrics import INSTANCE_WIDTH, NODE_WIDTH, instance_key, node_key
from tests.master.inprocess import settings_for


@pytest.fixture
def svc(tmp_path):
    svc = Services(settings_for(tmp_path))
    now = int(time.time())
    for n, host in enumerate(('web "1" \\ east', "db-2")):
        nid = f"node-{n}"
        svc.directory.on_node({"id": nid, "hostname": host})
        svc.metrics.store.add(node_key(nid), NODE_WIDTH, now, [12.5, 40, 63, 1000, 2000, 0.7])
        for k in range(2):
            iid = f"i-{n}-{k}"
            info = {"id": iid, "node_id": nid, "system_id": "sys", "name": f"svc-{k}"}
            svc.directory.on_instance({**info, "state": "running" if k == 0 else "stopped"})
    svc.metrics.store.add(instance_key("i-0-0"), INSTANCE_WIDTH, now, [2.3, 48 << 20, 0, 4096, 4])
    stale = now - 600  # a stopped instance's last sample: not exported
    svc.metrics.store.add(instance_key("i-1-1"), INSTANCE_WIDTH, stale, [9, 9, 9, 9, 9])
    svc.agents.links["node-0"] = object()  # node-0's agent is connected
    return svc


def parse(page: str | bytes) -> dict:
    text = page.decode() if isinstance(page, bytes) else page
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict, name: str) -> dict:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in families.values()
        for s in f.samples
        if s.name == name
    }


def test_every_family_with_its_type_labels_and_latest_values(svc):
    families = parse(prometheus.render(svc))
    gauges = [name for name, _ in (*prometheus.NODE_SERIES, *prometheus.INSTANCE_SERIES)]
    gauges += ["gdos_node_up", "gdos_instance_running", "gdos_alerts_firing"]
    for name in gauges:
        assert families[name].type == "gauge", name
    for name, (kind, _) in prometheus.MASTER_SERIES.items():
        # The parser names a counter family without its `_total` sample suffix.
        assert families[name.removesuffix("_total") if kind == "counter" else name].type == kind
    assert families["process_cpu_seconds"].type == "counter"

    up = samples(families, "gdos_node_up")
    assert up == {
        (("hostname", 'web "1" \\ east'), ("node_id", "node-0")): 1.0,
        (("hostname", "db-2"), ("node_id", "node-1")): 0.0,
    }
    running = samples(families, "gdos_instance_running")
    assert len(running) == 4 and sum(running.values()) == 2
    cpu = samples(families, "gdos_instance_cpu_percent")
    labels = (("instance_id", "i-0-0"), ("name", "svc-0"), ("node_id", "node-0"))
    assert cpu == {(*labels, ("system_id", "sys")): 2.3}  # float32 2.3, not 2.29999995
    assert samples(families, "gdos_instance_rss_bytes") == {
        (*labels, ("system_id", "sys")): 48 << 20
    }
    assert len(samples(families, "gdos_node_load1")) == 2
    assert samples(families, "gdos_master_connected_agents") == {(): 1.0}
    assert samples(families, "gdos_master_metrics_series") == {(): 4.0}


def test_the_benchmarks_prometheus_client_page_is_the_same_page(svc):
    """bench/libraries.py times the two against each other: they must say the same thing."""
    ours, theirs = parse(prometheus.render(svc)), parse(prometheus_client_page.render(svc))
    assert ours.keys() == theirs.keys()
    names = {s.name for f in ours.values() for s in f.samples if not s.name.startswith("process_")}
    for name in names:  # the process' own figures move between the two renders
        assert samples(ours, name) == samples(theirs, name), name
