"""The table view over a live model: a re-sort keeps the selection and current row on their items,
without a layout change when the view can put them back by key, with one when it cannot."""

from __future__ import annotations

import random

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QFont
from PySide6.QtTest import QAbstractItemModelTester

from console.models import tables
from console.models.cells import SORT_ROLE
from console.ui.table_panel import TablePanel
from tests.console.conftest import _app

FAIL = QAbstractItemModelTester.FailureReportingMode.Fatal
ROWS = 300  # a small table: a tick's flush re-sorts it


def _panel() -> tuple[tables.InstanceTableModel, TablePanel]:
    app = _app()
    model = tables.InstanceTableModel(tick_ms=1000, resort_ms=1_000_000)
    model.set_rows({"id": f"i{n}", "name": f"n{n:04d}"} for n in range(ROWS))
    panel = TablePanel(model, "test")
    QAbstractItemModelTester(panel.proxy, FAIL)
    panel.resize(900, 500)
    panel.show()
    panel.view.sortByColumn(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    return model, panel


def _live(model: tables.InstanceTableModel, seed: int) -> None:
    rng = random.Random(seed)
    samples = {f"i{n}": {"cpu_percent": rng.random() * 100} for n in range(ROWS)}
    samples["i3"] = {"cpu_percent": float("nan")}  # sorts as missing: last
    model.set_live(samples)
    model.flush()


def _selected_keys(panel: TablePanel) -> list[str]:
    rows = panel.view.selectionModel().selectedRows()
    return sorted(panel.proxy.key_at(i.row()) for i in rows)


def _select(panel: TablePanel, rows: list[int]) -> None:
    flags = QItemSelectionModel.SelectionFlag
    sel = panel.view.selectionModel()
    sel.clearSelection()
    for r in rows:
        sel.select(panel.proxy.index(r, 0), flags.Select | flags.Rows)
    sel.setCurrentIndex(panel.proxy.index(rows[0], 2), flags.NoUpdate)


def test_a_resort_keeps_the_selection_on_its_items_without_a_layout_change() -> None:
    model, panel = _panel()
    _live(model, 1)
    _select(panel, [5, 6, 7, 40])
    chosen = _selected_keys(panel)
    current = panel.proxy.key_at(panel.view.currentIndex().row())
    layouts, selections, changes = [], [], []
    panel.proxy.layoutChanged.connect(lambda *_: layouts.append(1))
    panel.view.selectionModel().selectionChanged.connect(lambda *_: selections.append(1))
    panel.view.selectionModel().currentChanged.connect(lambda *_: selections.append(1))
    panel.proxy.dataChanged.connect(lambda a, b, *_: changes.append((a.row(), b.row())))
    for seed in range(2, 5):
        resorts = model.resorts
        _live(model, seed)
        assert model.resorts == resorts + 1
        cpu = [
            model.data(model.index(r, model.column("cpu_percent")), SORT_ROLE) for r in range(ROWS)
        ]
        assert cpu == sorted(cpu, reverse=True) and model.key_at(ROWS - 1) == "i3"
        assert _selected_keys(panel) == chosen
        assert panel.proxy.key_at(panel.view.currentIndex().row()) == current
        assert panel.view.currentIndex().column() == 2
        # What the view paints as selected follows too.
        assert {model.key_at(r) for r in panel.view._selected} == set(chosen)
    assert layouts == [] and selections == []
    assert (0, ROWS - 1) in changes  # the re-sort: every row's data changed
    panel.close()


def test_a_resort_under_a_filter_is_a_layout_change_and_keeps_the_selection() -> None:
    model, panel = _panel()
    _live(model, 1)
    panel.proxy.set_text("n01")  # n0100 to n0199
    app = _app()
    app.processEvents()
    assert panel.proxy.rowCount() == 100
    _select(panel, [2, 3])
    chosen = _selected_keys(panel)
    layouts = []
    panel.proxy.layoutChanged.connect(lambda *_: layouts.append(1))
    _live(model, 2)
    assert layouts == [1]
    assert _selected_keys(panel) == chosen
    shown = [panel.proxy.index(r, model.column("cpu_percent")).data(SORT_ROLE) for r in range(100)]
    assert shown == sorted(shown, reverse=True)
    panel.close()


def test_a_resort_is_a_layout_change_while_a_view_holds_a_row_of_the_model_itself() -> None:
    model, panel = _panel()
    _live(model, 1)
    other = QItemSelectionModel(model)  # a plain view straight on the model, e.g. a dialog's
    flags = QItemSelectionModel.SelectionFlag
    other.select(model.index(9, 0), flags.ClearAndSelect | flags.Rows)
    chosen = model.key_at(9)
    layouts = []
    model.layoutChanged.connect(lambda *_: layouts.append(1))
    _live(model, 2)
    assert layouts == [1]
    assert model.key_at(other.selectedRows()[0].row()) == chosen
    panel.close()


def test_the_paint_font_is_the_views_without_shaping_and_its_widths_follow_a_font_change() -> None:
    model, panel = _panel()
    _live(model, 1)
    view = panel.view
    view.viewport().repaint()
    font, metrics, widths = view.paint_font()
    assert font.styleStrategy() & QFont.StyleStrategy.PreferNoShaping
    assert font.pointSizeF() == view.font().pointSizeF()
    shown = model.texts_at(0)[model.column("name")]
    assert widths[shown] == metrics.horizontalAdvance(shown)
    bigger = QFont(view.font())
    bigger.setPointSizeF(view.font().pointSizeF() * 2)
    view.setFont(bigger)
    font2, metrics2, widths2 = view.paint_font()
    assert widths2 == {} and font2.pointSizeF() == bigger.pointSizeF()
    view.viewport().repaint()
    assert widths2[shown] == metrics2.horizontalAdvance(shown) > widths[shown]
    assert view.paint_font()[2] is widths2  # the same font: the same cache
    panel.close()
