"""A table sorted by a live column takes the order the stream thread worked out when it still fits
the samples, and sorts itself otherwise: the same order either way."""

from __future__ import annotations

import random
import threading
import weakref
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt

from console.models import tables
from console.models.cells import SORT_ROLE
from console.services.stream import Inbox, LiveFigures, StreamThread
from console.ui.table_panel import TablePanel
from tests.console.conftest import _app, until

ROWS = 300


def _model(live: LiveFigures | None) -> tables.InstanceTableModel:
    model = tables.InstanceTableModel(tick_ms=1000, resort_ms=1_000_000)
    model.set_rows({"id": f"i{n}", "name": f"n{n:04d}"} for n in range(ROWS))
    if live is not None:
        model.attach_live(live.samples, live.order)
    model.sort(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    return model


def _samples(seed: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {
        f"i{n}": {"id": f"i{n}", "cpu_percent": float(rng.randrange(20))}  # many ties
        for n in range(ROWS)
        if n % 50  # every 50th row has no sample: no figure
    }
    out["i3"]["cpu_percent"] = float("nan")  # sorts as missing
    out["i7"] = {"id": "i7"}  # a sample without the figure
    return out


def _on_a_thread(fn: Any) -> None:
    """Run `fn` on another thread, as the stream thread runs its side."""
    worker = threading.Thread(target=fn)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()


def _stream_side(live: LiveFigures, samples: dict[str, dict[str, Any]], compute: bool) -> None:
    def side() -> None:
        for key, sample in samples.items():
            live.put(key, sample)
        if compute:
            assert live.order.compute()

    _on_a_thread(side)


def _cpu(model: tables.InstanceTableModel) -> list[float]:
    col = model.column("cpu_percent")
    return [model.data(model.index(r, col), SORT_ROLE) for r in range(len(model))]


def test_the_stream_threads_order_is_swapped_in_and_is_the_gui_threads_own() -> None:
    _app()
    live = LiveFigures()
    fast, plain = _model(live), _model(None)
    for seed in range(3):
        samples = _samples(seed)
        _stream_side(live, samples, compute=True)
        fast.live_changed(live.take())
        fast.flush()
        plain.set_live({k: dict(v) for k, v in samples.items()})
        plain.flush()
        assert fast.key_list() == plain.key_list()  # ties included: both sorts are stable
        assert fast.ready_resorts == seed + 1 and plain.ready_resorts == 0
        cpu = _cpu(fast)
        assert cpu == sorted(cpu, reverse=True)
        assert fast.key_at(ROWS - 1) in {"i0", "i3", "i7", "i50"} | {
            f"i{n}" for n in range(0, ROWS, 50)
        }
        assert not fast.order_stale
        assert [fast.row_of(k) for k in fast.key_list()] == list(range(ROWS))  # the key index


def test_a_sample_written_after_the_order_was_worked_out_leaves_that_order_aside() -> None:
    _app()
    live = LiveFigures()
    model = _model(live)
    _stream_side(live, _samples(1), compute=True)
    _stream_side(live, {"i9": {"id": "i9", "cpu_percent": 99.0}}, compute=False)
    model.live_changed(live.take())
    model.flush()
    assert model.ready_resorts == 0  # stale: sorted here instead
    assert model.key_at(0) == "i9"
    cpu = _cpu(model)
    assert cpu == sorted(cpu, reverse=True)


def test_a_sort_order_changed_mid_stream_takes_effect_at_once() -> None:
    _app()
    live = LiveFigures()
    model = _model(live)
    _stream_side(live, _samples(2), compute=True)  # an order by CPU, descending, is ready
    model.sort(model.column("cpu_percent"), Qt.SortOrder.AscendingOrder)
    assert model.ready_resorts == 0
    cpu = _cpu(model)
    assert cpu == sorted(cpu)
    model.sort(model.column("name"), Qt.SortOrder.AscendingOrder)
    assert model.key_list() == [f"i{n}" for n in range(ROWS)]
    # Back to CPU: the stream thread has nothing to work out for a column that is not live.
    assert not live.order.compute()


def test_rows_cleared_here_after_the_order_was_worked_out_are_merged_in_next() -> None:
    _app()
    live = LiveFigures()
    model = _model(live)
    _stream_side(live, _samples(3), compute=True)
    model.live_changed(live.take())
    model.flush()
    top = model.key_at(0)
    _stream_side(
        live,
        {k: dict(v, cpu_percent=200.0 - n) for n, (k, v) in enumerate(_samples(4).items())},
        compute=True,
    )
    model.live_changed(live.take())
    model.clear_live([top])  # its instance stopped: no figures, last
    model.flush()
    assert model.ready_resorts == 2  # the stream thread's order, though it predates the clear
    assert model.order_stale  # with the cleared row still to place
    model.resort()  # the next re-sort merges it in (here: no stream thread computed again)
    cpu = _cpu(model)
    assert cpu == sorted(cpu, reverse=True) and not model.order_stale
    assert cpu[model.row_of(top)] == -1.0  # among the rows without a figure, at the end


def _panel(live: LiveFigures) -> tuple[tables.InstanceTableModel, TablePanel]:
    app = _app()
    model = _model(live)
    panel = TablePanel(model, "test")
    panel.resize(900, 500)
    panel.show()
    panel.view.sortByColumn(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    return model, panel


def test_selection_and_current_row_follow_their_items_and_filters_still_apply() -> None:
    live = LiveFigures()
    model, panel = _panel(live)
    _stream_side(live, _samples(5), compute=True)
    model.live_changed(live.take())
    model.flush()
    flags = QItemSelectionModel.SelectionFlag
    sel = panel.view.selectionModel()
    for r in (4, 5, 30):
        sel.select(panel.proxy.index(r, 0), flags.Select | flags.Rows)
    sel.setCurrentIndex(panel.proxy.index(4, 2), flags.NoUpdate)
    chosen = sorted(panel.proxy.key_at(i.row()) for i in sel.selectedRows())
    current = panel.proxy.key_at(sel.currentIndex().row())
    layouts: list[int] = []
    panel.proxy.layoutChanged.connect(lambda *_: layouts.append(1))
    _stream_side(live, _samples(6), compute=True)
    model.live_changed(live.take())
    model.flush()
    assert model.ready_resorts == 2 and layouts == []
    assert sorted(panel.proxy.key_at(i.row()) for i in sel.selectedRows()) == chosen
    assert panel.proxy.key_at(sel.currentIndex().row()) == current
    assert {model.key_at(r) for r in panel.view._selected} == set(chosen)
    panel.proxy.set_text("n01")  # n0100 to n0199
    _app().processEvents()
    _stream_side(live, _samples(7), compute=True)
    model.live_changed(live.take())
    model.flush()
    assert model.ready_resorts == 3 and layouts == [1]  # under a filter: a layout change
    col = model.column("cpu_percent")
    shown = [panel.proxy.index(r, col).data(SORT_ROLE) for r in range(panel.proxy.rowCount())]
    assert panel.proxy.rowCount() == 100 and shown == sorted(shown, reverse=True)
    panel.close()


async def test_a_due_resort_waits_for_the_order_the_stream_thread_works_out() -> None:
    """A real stream thread (its master unreachable: it only retries) fed a burst on its loop;
    the GUI thread's re-sort falls due at once and waits for the stream thread's order."""
    _app()
    inbox = Inbox(lambda: None)
    live = inbox.live
    model = _model(live)
    from console.client import Client

    stream = StreamThread(Client("http://127.0.0.1:9", token="t"), inbox)
    stream.start()
    try:
        assert stream.loop is not None and live.order.attended
        samples = _samples(8)

        def burst() -> None:
            for s in samples.values():
                inbox.put("metrics", s)

        stream.loop.call_soon_threadsafe(burst)
        before = model.resorts
        model.live_changed(None)  # "maybe every row": due now, whatever arrived yet
        model.flush()
        await until(lambda: model.resorts > before, what="the re-sort")
        assert model.ready_resorts == 1
        await until(lambda: len(live.samples) == len(samples), what="the burst")
        cpu = _cpu(model)
        assert cpu == sorted(cpu, reverse=True)
    finally:
        await stream.stop()
    assert not live.order.attended


def test_a_row_cleared_here_between_bursts_is_placed_at_once() -> None:
    _app()
    live = LiveFigures()
    model = _model(live)
    _stream_side(live, _samples(9), compute=True)
    model.live_changed(live.take())
    model.flush()  # the stream thread's order: in order now, as far as it knows
    top = model.key_at(0)
    model.clear_live([top])  # its instance stopped before the next burst
    model.flush()
    assert model.ready_resorts == 1 and not model.order_stale
    cpu = _cpu(model)
    assert cpu == sorted(cpu, reverse=True) and cpu[model.row_of(top)] == -1.0


def test_the_old_order_is_freed_by_the_stream_thread_that_attends() -> None:
    _app()
    live = LiveFigures()
    model = _model(live)
    _stream_side(live, _samples(3), compute=True)
    model.live_changed(live.take())
    old = weakref.ref(model._order_request)  # holds the rows and keys as they were
    model.flush()
    assert model.ready_resorts == 1 and live.order.retired == 0  # no thread attends: freed here
    assert old() is None

    live.order.attend(lambda: None)  # a stream thread attends from now on
    _stream_side(live, _samples(4), compute=True)
    model.live_changed(live.take())
    old = weakref.ref(model._order_request)
    model.flush()
    assert model.ready_resorts == 2 and live.order.retired == 2  # the lists, the sort keys
    assert old() is not None  # not freed by the GUI thread's swap
    freed_on: list[str] = []
    weakref.finalize(old(), lambda: freed_on.append(threading.current_thread().name))
    _on_a_thread(live.order.compute)  # the stream thread's next computation frees them first
    assert old() is None and freed_on and freed_on[0] != threading.main_thread().name
    assert live.order.retired == 0
    cpu = _cpu(model)
    assert cpu == sorted(cpu, reverse=True)
    live.order.attend(None)


def _signals(model: tables.InstanceTableModel) -> list[tuple[int, int, int, int]]:
    """Every dataChanged the model emits from now on: (top, left, bottom, right)."""
    seen: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(
        lambda a, b, *_: seen.append((a.row(), a.column(), b.row(), b.column()))
    )
    return seen


def _resorted_once() -> tuple[LiveFigures, tables.InstanceTableModel]:
    """A model sorted once with the stream thread's order, a stream thread attending (the test
    computes for it, and detaches it with `live.order.attend(None)`)."""
    _app()
    live = LiveFigures()
    model = _model(live)
    live.order.attend(lambda: None)
    _stream_side(live, _samples(5), compute=True)
    model.live_changed(live.take())
    model.flush()
    assert model.ready_resorts == 1
    return live, model


async def test_new_figures_wait_with_the_resort_so_the_view_repaints_once() -> None:
    live, model = _resorted_once()
    try:
        seen = _signals(model)
        every_row = (0, 0, ROWS - 1, model.columnCount() - 1)

        # A burst the stream thread has not ordered yet: the figures wait for the re-sort.
        _stream_side(live, _samples(6), compute=False)
        model.live_changed(live.take())
        model.flush()
        assert model.awaiting_order and seen == []
        _on_a_thread(live.order.compute)
        await until(lambda: model.resorts > 1, what="the re-sort")
        assert seen == [every_row] and model.ready_resorts == 2  # figures and order, once

        # The same figures again (new samples): nothing moves, the figures are signalled then.
        seen.clear()
        _stream_side(live, {k: dict(v) for k, v in _samples(6).items()}, compute=False)
        model.live_changed(live.take())
        model.flush()
        assert model.awaiting_order and seen == []
        _on_a_thread(live.order.compute)
        first, last = model.live_columns[0], model.live_columns[-1]
        await until(lambda: seen, what="the held figures")
        assert seen == [(0, first, ROWS - 1, last)] and not model.awaiting_order
        assert model.resorts == 2
        cpu = _cpu(model)
        assert cpu == sorted(cpu, reverse=True)
    finally:
        live.order.attend(None)


async def test_rows_changed_while_a_resort_waits_are_signalled_with_it_once() -> None:
    """A state change merged while the re-sort waits for the stream thread's order, and one
    still queued when that order comes, reach the view in the re-sort's one signal; with
    nothing to move, the held row is signalled on its own."""
    live, model = _resorted_once()
    try:
        seen = _signals(model)
        every_row = (0, 0, ROWS - 1, model.columnCount() - 1)
        first, second = model.key_at(10), model.key_at(20)

        _stream_side(live, _samples(6), compute=False)
        model.live_changed(live.take())
        model.update({"id": first, "state": "stopping"})
        model.flush()  # merged now, signalled with the re-sort
        assert model.awaiting_order and seen == []
        assert model.row(first)["state"] == "stopping"  # type: ignore[index]
        model.update({"id": second, "state": "starting"})  # queued: the next tick's
        _on_a_thread(live.order.compute)
        await until(lambda: model.resorts > 1, what="the re-sort")
        assert seen == [every_row] and model.ready_resorts == 2
        assert model.row(second)["state"] == "starting"  # type: ignore[index]
        assert not model._pending and not model._held_rows

        # The same figures again: nothing moves; the held row is signalled, then the figures.
        seen.clear()
        _stream_side(live, {k: dict(v) for k, v in _samples(6).items()}, compute=False)
        model.live_changed(live.take())
        model.update({"id": first, "state": "running"})
        model.flush()
        assert model.awaiting_order and seen == []
        _on_a_thread(live.order.compute)
        await until(lambda: len(seen) == 2, what="the held row and figures")
        row = model.row_of(first)
        live_first, live_last = model.live_columns[0], model.live_columns[-1]
        assert seen == [
            (row, 0, row, model.columnCount() - 1),
            (0, live_first, ROWS - 1, live_last),
        ]
        assert model.resorts == 2
    finally:
        live.order.attend(None)
