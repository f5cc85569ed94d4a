"""Every console model passes QAbstractItemModelTester; updates are batched and ranged."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, QObject, Qt, Signal
from PySide6.QtTest import QAbstractItemModelTester

from console.models import tables
from console.models.base import KEY_ROLE, ROW_ROLE, SORT_ROLE, FilterProxy, RowTableModel
from console.models.series import Series, SeriesStore, decimate
from console.models.systems import KIND_ROLE, SystemTreeModel
from tests.console.conftest import _app

FAIL = QAbstractItemModelTester.FailureReportingMode.Fatal


def _sample_row(model: type[RowTableModel], n: int) -> dict:
    row: dict = {c.key: n for c in model.COLUMNS}
    row.update(
        {
            model.KEY: f"k{n}",
            "name": f"inst-{n}",
            "state": "running" if n % 2 else "stopped",
            "load": {"cpu_percent": 1.0 * n, "mem_percent": 2.0},
            "labels": {"zone": "a"},
            "scope": {"node_id": "n1"},
            "detail": {"x": n},
            "manifest": {"name": "p"},
            "started_at": "2026-01-01T00:00:00Z",
            "ts": "2026-01-01T00:00:00Z",
        }
    )
    return row


ALL_TABLES = [
    tables.NodeTableModel,
    tables.InstanceTableModel,
    tables.PackageTableModel,
    tables.AlertRuleTableModel,
    tables.AlertTableModel,
    tables.SilenceTableModel,
    tables.AuditTableModel,
    tables.UserTableModel,
    tables.BackupTableModel,
    tables.OperationStepModel,
]


@pytest.mark.parametrize("cls", ALL_TABLES, ids=lambda c: c.__name__)
def test_table_models_pass_the_model_tester(cls):
    _app()
    model = cls(tick_ms=0)
    tester = QAbstractItemModelTester(model, FAIL)
    model.set_rows([_sample_row(cls, n) for n in range(5)])
    model.update(_sample_row(cls, 7))  # insert
    model.update({cls.KEY: "k1", "state": "failed"})  # change
    model.remove("k2")
    model.remove("k3")
    model.flush()
    assert len(model) == 4
    for r in range(model.rowCount()):
        for c in range(model.columnCount()):
            idx = model.index(r, c)
            assert isinstance(model.data(idx), str)
            model.data(idx, SORT_ROLE)
            model.data(idx, Qt.ItemDataRole.ToolTipRole)
    assert model.data(model.index(0, 0), KEY_ROLE) == "k0"
    assert model.data(model.index(0, 0), ROW_ROLE)[cls.KEY] == "k0"
    proxy = FilterProxy(model)
    QAbstractItemModelTester(proxy, FAIL)
    proxy.sort(0)
    proxy.set_text("zzz-no-match")
    assert proxy.rowCount() == 0
    proxy.set_text("")
    assert proxy.rowCount() == 4
    del tester


def test_updates_are_batched_into_ranged_data_changed():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    model.set_rows([{"id": f"i{n}", "name": f"i{n}", "state": "stopped"} for n in range(1000)])
    changed: list[tuple[int, int, int, int]] = []
    resets: list[int] = []
    inserted: list[tuple[int, int]] = []
    model.dataChanged.connect(
        lambda a, b, roles=None: changed.append((a.row(), b.row(), a.column(), b.column()))
    )
    model.modelReset.connect(lambda: resets.append(1))
    model.rowsInserted.connect(lambda parent, a, b: inserted.append((a, b)))
    for n in range(100, 600):
        model.update({"id": f"i{n}", "cpu_percent": float(n)})
        model.update({"id": f"i{n}", "rss_bytes": n * 1000})  # two updates of one row: merged
    model.update({"id": "new1", "name": "new1", "state": "deploying"})
    model.update({"id": "new2", "name": "new2", "state": "deploying"})
    assert changed == [] and inserted == []  # nothing until the tick
    assert model.flush() == 502
    cpu, rss = model.column("cpu_percent"), model.column("rss_bytes")
    assert changed == [(100, 599, cpu, rss)]  # one ranged signal, only the columns that changed
    assert inserted == [(1000, 1001)]
    assert resets == []
    row = model.row("i300")
    assert row["cpu_percent"] == 300.0 and row["rss_bytes"] == 300_000 and row["state"] == "stopped"


def test_a_metrics_tick_does_not_resort_a_proxy_sorted_by_name():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    model.set_rows([{"id": f"i{n}", "name": f"i{n:04d}", "state": "running"} for n in range(2000)])
    proxy = FilterProxy(model)
    proxy.sort(model.column("name"))
    layouts = []
    proxy.layoutChanged.connect(lambda *a: layouts.append(1))
    for n in range(2000):
        model.merge(f"i{n}", {"cpu_percent": float(n % 97)})
    model.merge("unknown", {"cpu_percent": 1.0})  # not a row: ignored
    model.flush()
    assert layouts == []
    assert model.row("i5")["cpu_percent"] == 5.0 and model.row("unknown") is None
    proxy.sort(model.column("cpu_percent"))
    layouts.clear()
    for n in range(2000):
        model.merge(f"i{n}", {"cpu_percent": float((n * 7) % 101)})
    model.flush()
    assert layouts  # sorted by the changing column: the proxy re-sorts, as it must
    top = proxy.index(0, model.column("cpu_percent")).data(SORT_ROLE)
    assert top == 0.0


def test_merge_many_applies_a_batch_in_one_ranged_signal():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    QAbstractItemModelTester(model, FAIL)
    model.set_rows([{"id": f"i{n}", "name": f"i{n}"} for n in range(100)])
    changed = []
    model.dataChanged.connect(
        lambda a, b, roles=None: changed.append((a.row(), b.row(), a.column(), b.column()))
    )
    fields = ("cpu_percent", "rss_bytes")
    model.merge_many({f"i{n}": {"cpu_percent": 1.0 * n} for n in range(50)}, fields)
    model.merge_many({"i10": {"rss_bytes": 5}, "ghost": {"cpu_percent": 9.0}}, fields)
    model.flush()
    assert changed == [(0, 49, model.column("cpu_percent"), model.column("rss_bytes"))]
    assert model.row("i10") == {"id": "i10", "name": "i10", "cpu_percent": 10.0, "rss_bytes": 5}
    assert model.row("ghost") is None and len(model) == 100


def test_an_update_that_changes_nothing_signals_nothing():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    model.set_rows([{"id": "i1", "name": "a", "state": "running", "pid": 7}])
    changed = []
    model.dataChanged.connect(lambda a, b, roles=None: changed.append((a.column(), b.column())))
    model.update({"id": "i1", "name": "a", "state": "running", "pid": 7})
    model.flush()
    assert changed == []
    model.update({"id": "i1", "name": "a", "state": "stopped", "pid": None})
    model.flush()
    assert changed == [(model.column("state"), model.column("pid"))]


def test_sparse_updates_give_one_signal_per_run_and_removals_keep_index():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    QAbstractItemModelTester(model, FAIL)
    model.set_rows([{"id": f"i{n}", "name": f"i{n}"} for n in range(1000)])
    changed = []
    model.dataChanged.connect(lambda a, b, roles=None: changed.append((a.row(), b.row())))
    for n in (1, 2, 3, 500, 501, 999):
        model.update({"id": f"i{n}", "state": "running"})
    model.flush()
    assert changed == [(1, 3), (500, 501), (999, 999)]
    for n in (0, 1, 2, 10, 998):
        model.update({"id": f"i{n}", "deleted": True})
    model.flush()
    assert len(model) == 995
    assert model.row_of("i3") == 0 and model.key_at(model.row_of("i999")) == "i999"
    assert model.row("i10") is None


def test_filter_proxy_sorts_numbers_as_numbers():
    _app()
    model = tables.InstanceTableModel(tick_ms=0)
    model.set_rows(
        [
            {"id": f"i{n}", "name": f"web-{n}", "cpu_percent": v}
            for n, v in enumerate([9.0, 10.0, 100.0, 2.5])
        ]
    )
    proxy = FilterProxy(model)
    proxy.sort(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    assert [proxy.key_at(r) for r in range(4)] == ["i2", "i1", "i0", "i3"]
    proxy.set_text("WEB-1")
    assert proxy.rowCount() == 1 and proxy.key_at(0) == "i1"


def test_system_tree_passes_the_model_tester_and_updates_in_place():
    _app()
    model = SystemTreeModel()
    QAbstractItemModelTester(model, FAIL)
    detail = {
        "id": "s1",
        "name": "shop",
        "description": "",
        "modules": [
            {"id": "m1", "name": "db", "package": "pg", "version": None, "start_order": 1},
            {"id": "m2", "name": "web", "package": "web", "version": "2", "start_order": 2},
        ],
        "instances": [
            {"id": "i1", "module_id": "m1", "name": "db-1", "state": "stopped", "node_id": "n"},
            {"id": "i2", "module_id": "m2", "name": "web-1", "state": "stopped", "node_id": "n"},
        ],
    }
    model.set_systems([detail])
    sys_idx = model.index(0, 0)
    assert model.rowCount(sys_idx) == 2
    assert model.data(sys_idx, KIND_ROLE) == "system"
    db_idx = model.index(0, 0, sys_idx)
    assert model.data(model.index(0, 0, db_idx), Qt.ItemDataRole.DisplayRole) == "db-1"
    assert model.update_instance({"id": "i1", "state": "running", "pid": 42})
    assert model.data(model.index(0, 2, db_idx)) == "running"
    assert not model.update_instance({"id": "unknown", "state": "running"})
    model.update_instance({"id": "i2", "deleted": True})
    assert model.rowCount(model.index(1, 0, sys_idx)) == 0
    model.upsert_system({**detail, "name": "shop2", "instances": []})
    assert model.rowCount() == 1 and model.data(model.index(0, 0)) == "shop2"
    model.upsert_system({"id": "s2", "name": "other", "modules": [], "instances": []})
    model.remove_system("s1")
    assert model.rowCount() == 1 and model.system_ids() == ["s2"]
    assert model.rowCount(QModelIndex()) == 1


def test_series_are_bounded_and_ordered():
    s = Series(capacity=100)
    for t in range(250):
        s.append(float(t), float(t) * 2)
    ts, _ = s.arrays()
    assert len(ts) == 100 and ts[0] == 150 and ts[-1] == 249 and np.all(np.diff(ts) > 0)
    s.append(10.0, 1.0)  # late sample ignored
    assert s.last == 498.0
    wts, _ = s.window(10)
    assert list(wts) == [float(t) for t in range(239, 250)]
    store = SeriesStore(capacity=10, max_series=3)
    for n in range(5):
        store.add(f"t{n}", 1.0, {"cpu_percent": 1.0})
    assert len(store) == 3 and not store.has("t0", "cpu_percent")


def test_decimate_keeps_extremes_and_caps_points():
    ts = np.arange(3600, dtype=np.float64)
    v = np.sin(ts / 50.0)
    v[1234] = 5.0
    v[2345] = -5.0
    dt, dv = decimate(ts, v, 400)
    assert len(dt) <= 801
    assert dv.max() == 5.0 and dv.min() == -5.0
    assert np.all(np.diff(dt) >= 0)
    same_t, _ = decimate(ts[:100], v[:100], 400)
    assert len(same_t) == 100


class _Emitter(QObject):
    ping = Signal(bool, int)


def test_one_hundred_thousand_signals_from_python():
    """PySide6 6.12.0 on Python 3.11 loses a reference to True per emit and aborts (bool_dealloc);
    the console pins PySide6 below 6.12. This must run to the end without crashing."""
    _app()
    e = _Emitter()
    got = [0]

    def slot(flag: bool, n: int) -> None:
        got[0] += 1

    e.ping.connect(slot)
    for n in range(100_000):
        e.ping.emit(True, n)
    assert got[0] == 100_000
    import sys

    assert sys.getrefcount(True) > 0
