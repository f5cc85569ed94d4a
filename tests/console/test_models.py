"""Every console model passes QAbstractItemModelTester; updates are batched and ranged."""

from __future__ import annotations

import itertools
import math
import random
from array import array

import pytest
from PySide6.QtCore import QModelIndex, QObject, Qt, Signal
from PySide6.QtTest import QAbstractItemModelTester

from console.models import row_order, rows, tables
from console.models.base import RowTableModel
from console.models.cells import KEY_ROLE, ROW_ROLE, SORT_ROLE
from console.models.filter_proxy import FilterProxy
from console.models.series import Series, SeriesStore, decimate
from console.models.systems import KIND_ROLE, SystemTreeModel
from protocol.monitoring import AlertOut, AlertRuleOut, SilenceOut
from protocol.rest import (
    InstanceOut,
    LoadOut,
    ModuleOut,
    NodeOut,
    OperationOut,
    PackageOut,
    StepOut,
    SystemDetail,
)
from protocol.rest_releases import InstanceSettings, ReleaseInstance, ReleaseOut, RolloutOut
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


def test_the_instance_table_shows_each_user_and_marks_root():
    _app()
    model = tables.InstanceTableModel(tick_ms=0)
    model.set_rows(
        [
            {"id": "a", "name": "web", "user": "nobody"},
            {"id": "b", "name": "db", "user": "root"},
            {"id": "c", "name": "old"},  # an agent that does not report users yet
        ]
    )
    col = model.column("user")
    assert model.headerData(col, Qt.Orientation.Horizontal) == "User"
    shown = [model.data(model.index(r, col)) for r in range(3)]
    assert shown == ["nobody", "root (!)", ""]
    fg = Qt.ItemDataRole.ForegroundRole
    assert model.data(model.index(0, col), fg) is None
    assert model.data(model.index(1, col), fg) is not None  # root in the warning colour
    assert "runs as root" in model.data(model.index(1, 0), Qt.ItemDataRole.ToolTipRole)


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
        model.update({"id": f"i{n}", "state": "running"})
        model.update({"id": f"i{n}", "pid": n})  # two updates of one row: merged
    model.update({"id": "new1", "name": "new1", "state": "deploying"})
    model.update({"id": "new2", "name": "new2", "state": "deploying"})
    assert changed == [] and inserted == []  # nothing until the tick
    assert model.flush() == 502
    state, pid = model.column("state"), model.column("pid")
    assert changed == [(100, 599, state, pid)]  # one ranged signal, only the columns that changed
    assert inserted == [(1000, 1001)]
    assert resets == []
    row = model.row("i300")
    assert row["pid"] == 300 and row["state"] == "running"


def _cpu(n: float) -> dict:
    return {"id": "x", "kind": "instance", "cpu_percent": n, "rss_bytes": 1 << 20}


def test_live_figures_take_one_dict_update_and_one_ranged_signal():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    QAbstractItemModelTester(model, FAIL)
    model.set_rows([{"id": f"i{n}", "name": f"i{n:04d}"} for n in range(2000)])
    changed: list[tuple[int, int, int, int, list]] = []
    model.dataChanged.connect(
        lambda a, b, roles=None: changed.append(
            (a.row(), b.row(), a.column(), b.column(), list(roles or []))
        )
    )
    model.set_live({f"i{n}": _cpu(float(n % 97)) for n in range(2000)})
    model.set_live({"unknown": _cpu(1.0)})  # not a row: never shown
    assert changed == []
    model.flush()
    cpu, write = model.column("cpu_percent"), model.column("write_bps")
    assert changed == [(0, 1999, cpu, write, [int(Qt.ItemDataRole.DisplayRole)])]
    assert model.row("i5") == {"id": "i5", "name": "i0005"}  # rows are not touched
    assert model.data(model.index(5, cpu)) == "5.0 %"
    assert model.data(model.index(5, model.column("rss_bytes"))) == "1.0 MiB"
    assert model.data(model.index(5, cpu), SORT_ROLE) == 5.0
    # A few samples (what subscriptions bring): ranged runs over just those rows.
    changed.clear()
    model.set_live({"i10": _cpu(50.0), "i11": _cpu(51.0), "i1500": _cpu(1.0)})
    model.flush()
    assert [(a, b) for a, b, *_ in changed] == [(10, 11), (1500, 1500)]
    assert model.data(model.index(10, cpu)) == "50.0 %"
    # No longer followed: blank, never a stale figure shown as live.
    model.clear_live(["i10"])
    model.flush()
    assert model.data(model.index(10, cpu)) == ""


def test_a_live_tick_does_not_resort_a_table_sorted_by_name():
    _app()
    model = tables.InstanceTableModel(tick_ms=1000, resort_ms=1_000_000)
    model.set_rows([{"id": f"i{n}", "name": f"i{n:04d}", "state": "running"} for n in range(3000)])
    proxy = FilterProxy(model)
    proxy.sort(model.column("name"))
    layouts = []
    proxy.layoutChanged.connect(lambda *a: layouts.append(1))
    model.set_live({f"i{n}": _cpu(float(n % 97)) for n in range(3000)})
    model.flush()
    assert layouts == [] and model.resorts == 0
    # Sorted by the changing column: the order follows on the slower timer, not every tick.
    proxy.sort(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    assert proxy.index(0, model.column("cpu_percent")).data(SORT_ROLE) == 96.0
    layouts.clear()
    reorders = []
    model.reordered.connect(lambda: reorders.append(1))
    model.set_live({f"i{n}": _cpu(float((n * 7) % 101)) for n in range(3000)})
    model.flush()
    assert layouts == [] and reorders == [] and model._resort_timer.isActive()
    model.resort()  # what the timer does
    assert reorders == [1]
    assert proxy.index(0, model.column("cpu_percent")).data(SORT_ROLE) == 100.0


def test_sorting_keeps_the_selection_on_its_row():
    _app()
    from PySide6.QtCore import QItemSelectionModel

    model = tables.InstanceTableModel(tick_ms=1000)
    model.set_rows([{"id": f"i{n}", "name": f"n{n}", "pid": n} for n in range(10)])
    proxy = FilterProxy(model)
    QAbstractItemModelTester(proxy, FAIL)
    selection = QItemSelectionModel(proxy)
    proxy.sort(model.column("pid"))
    selection.select(
        proxy.index(3, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    assert proxy.key_at(selection.selectedRows()[0].row()) == "i3"
    proxy.sort(model.column("pid"), Qt.SortOrder.DescendingOrder)
    assert proxy.key_at(selection.selectedRows()[0].row()) == "i3"
    assert proxy.key_at(0) == "i9"
    # A small table follows a change of the sorted column at the next tick.
    model.update({"id": "i0", "pid": 100})
    model.flush()
    assert proxy.key_at(0) == "i0"
    assert proxy.key_at(selection.selectedRows()[0].row()) == "i3"


@pytest.mark.parametrize("descending", [True, False])
def test_merging_changed_keys_in_orders_as_a_full_sort_would(descending):
    rng = random.Random(11)
    keys = sorted(
        (rng.choice([-1.0, rng.randrange(40) / 4]) for _ in range(500)), reverse=descending
    )
    changed = sorted(rng.sample(range(500), 60))
    fresh = [rng.choice([-1.0, rng.randrange(40) / 4]) for _ in changed]
    order, merged = row_order.merged_order(keys, changed, fresh, descending)
    # The same as a stable full sort of the unchanged rows followed by the changed ones.
    now = dict(enumerate(keys)) | dict(zip(changed, fresh, strict=True))
    lined_up = [i for i in range(500) if i not in set(changed)] + changed
    assert order == sorted(lined_up, key=now.__getitem__, reverse=descending)
    assert merged == [now[i] for i in order]


@pytest.mark.parametrize("column", ["cpu_percent", "pid", "name"])
def test_a_resort_of_a_few_changed_rows_matches_a_full_sort(column):
    _app()
    from PySide6.QtCore import QItemSelectionModel

    rng = random.Random(5)
    model = tables.InstanceTableModel(tick_ms=1000, resort_ms=1_000_000)
    model.set_rows(
        [
            {"id": f"i{n}", "name": f"n{rng.randrange(300)}", "pid": rng.choice([None, n])}
            for n in range(3000)
        ]
    )
    model.set_live({f"i{n}": _cpu(rng.random() * 100) for n in range(0, 3000, 2)})
    model.flush()
    proxy = FilterProxy(model)
    QAbstractItemModelTester(proxy, FAIL)
    selection = QItemSelectionModel(proxy)
    c = model.column(column)
    proxy.sort(c, Qt.SortOrder.DescendingOrder)
    flags = QItemSelectionModel.SelectionFlag
    selection.select(proxy.index(7, 0), flags.ClearAndSelect | flags.Rows)
    chosen = proxy.key_at(7)
    for step in range(4):  # a few rows change, come and go each time: merged in, not re-sorted
        picked = rng.sample(range(3000), 150)
        model.set_live({f"i{n}": _cpu(rng.random() * 100) for n in picked[:100]})
        model.clear_live([f"i{n}" for n in picked[100:110]])
        for n in picked[110:140]:
            model.update({"id": f"i{n}", "name": f"n{rng.randrange(300)}", "pid": n + step})
        model.update({"id": f"new{step}", "name": "new", "pid": 5})
        model.remove(model.key_at(rng.randrange(len(model))) if step else "nothing")
        model.flush()
        model.resort()  # what the timer does
        merged = [model.key_at(r) for r in range(len(model))]
        shown = [model.data(model.index(r, c), SORT_ROLE) for r in range(len(model))]
        assert shown == sorted(shown, reverse=True)
        assert all(model.row_of(k) == r for r, k in enumerate(merged))
        assert proxy.key_at(selection.selectedRows()[0].row()) == chosen
        model.sort(c, Qt.SortOrder.DescendingOrder)  # from scratch: the same values in order
        assert [model.data(model.index(r, c), SORT_ROLE) for r in range(len(model))] == shown
        assert sorted(merged) == sorted(model.key_at(r) for r in range(len(model)))
    assert model.resorts >= 4


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


def test_rows_scattered_over_many_runs_are_one_signal_over_their_range():
    """A tick's state changes of rows all over a large table: one signal, not one per run
    (views repaint only what they show of it)."""
    _app()
    model = tables.InstanceTableModel(tick_ms=1000)
    model.set_rows([{"id": f"i{n}", "name": f"i{n}"} for n in range(10_000)])
    changed = []
    model.dataChanged.connect(lambda a, b, roles=None: changed.append((a.row(), b.row())))
    scattered = [37 + 97 * n for n in range(100)]
    for n in scattered:
        model.update({"id": f"i{n}", "state": "stopping"})
    model.flush()
    assert changed == [(scattered[0], scattered[-1])]
    assert model.row(f"i{scattered[50]}")["state"] == "stopping"


def test_filter_proxy_sorts_numbers_as_numbers_and_filters_text():
    _app()
    model = tables.InstanceTableModel(tick_ms=0)
    model.set_rows(
        [
            {"id": f"i{n}", "name": f"web-{n}", "state": s, "pid": v}
            for n, (v, s) in enumerate(
                [(9, "running"), (10, "stopped"), (100, "running"), (2, "failed")]
            )
        ]
    )
    proxy = FilterProxy(model)
    QAbstractItemModelTester(proxy, FAIL)
    proxy.sort(model.column("pid"), Qt.SortOrder.DescendingOrder)
    assert [proxy.key_at(r) for r in range(4)] == ["i2", "i1", "i0", "i3"]
    proxy.set_text("WEB-1")
    assert proxy.rowCount() == 1 and proxy.key_at(0) == "i1"
    proxy.set_text("running", model.column("state"))
    assert sorted(proxy.key_at(r) for r in range(proxy.rowCount())) == ["i0", "i2"]
    # Not dynamic: a change reaches the filter on its timer, not per signal.
    model.update({"id": "i3", "state": "running"})
    model.flush()
    assert proxy.rowCount() == 2
    proxy.refilter()  # what the re-filter timer does
    assert proxy.rowCount() == 3
    proxy.set_text("")
    assert proxy.rowCount() == 4


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
    assert len(ts) == 100 and ts[0] == 150 and ts[-1] == 249
    assert all(a < b for a, b in itertools.pairwise(ts))
    s.append(10.0, 1.0)  # late sample ignored
    assert s.last == 498.0
    wts, _ = s.window(10)
    assert list(wts) == [float(t) for t in range(239, 250)]
    store = SeriesStore(capacity=10, max_series=3)
    for n in range(5):
        store.add(f"t{n}", 1.0, {"cpu_percent": 1.0})
    assert len(store) == 3 and not store.has("t0", "cpu_percent")


def test_decimate_keeps_extremes_and_caps_points():
    ts = array("d", range(3600))
    v = array("d", (math.sin(t / 50.0) for t in ts))
    v[1234] = 5.0
    v[2345] = -5.0
    dt, dv = decimate(ts, v, 400)
    assert len(dt) <= 801
    assert max(dv) == 5.0 and min(dv) == -5.0
    assert all(a <= b for a, b in itertools.pairwise(dt))
    # Each bucket's min and max, at their own times, earlier one first.
    assert (dt[0], dv[0]) == (0.0, 0.0) and (dt[1], dv[1]) == (8.0, math.sin(8 / 50.0))
    assert 1234.0 in dt and dv[list(dt).index(1234.0)] == 5.0
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


# What the console adds to the API's rows (names instead of ids, flags), or events carry.
CONSOLE_FIELDS = {
    "deleted",
    "health_check",
    "matcher_text",
    "module_name",
    "newest_version",
    "node_name",
    "scope_text",
    "system_name",
}


@pytest.mark.parametrize(
    ("row_type", "api_model"),
    [
        (rows.LoadRow, LoadOut),
        (rows.NodeRow, NodeOut),
        (rows.InstanceRow, InstanceOut),
        (rows.PackageRow, PackageOut),
        (rows.ModuleRow, ModuleOut),
        (rows.SystemRow, SystemDetail),
        (rows.StepRow, StepOut),
        (rows.OperationRow, OperationOut),
        (rows.RolloutRow, RolloutOut),
        (rows.InstanceSettingsRow, InstanceSettings),
        (rows.ReleaseRow, ReleaseOut),
        (rows.ReleaseInstanceRow, ReleaseInstance),
        (rows.AlertRow, AlertOut),
        (rows.AlertRuleRow, AlertRuleOut),
        (rows.SilenceRow, SilenceOut),
    ],
)
def test_row_types_name_only_fields_their_api_model_has(row_type, api_model):
    """A typo in a row type, or a field the API no longer sends, fails here, not in a view."""
    declared = row_type.__required_keys__ | row_type.__optional_keys__
    assert declared - CONSOLE_FIELDS <= set(api_model.model_fields)
    assert (
        "id" in declared
        or "instance_id" in declared
        or "operation_id" in declared
        or row_type in (rows.LoadRow, rows.RolloutRow, rows.InstanceSettingsRow)
    )
