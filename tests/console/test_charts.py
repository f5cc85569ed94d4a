"""Charts draw what a fresh drawing of the same window would, redraw after redraw."""

import time
from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QApplication

from console.models.series import SeriesStore
from console.ui import charts
from console.ui.charts import Chart, Line


def _points(chart: Chart) -> list[list[tuple[float, float]]]:
    return [[(p.x(), p.y()) for p in s.points()] for s in chart._series]


def test_redraws_that_add_samples_match_a_drawing_from_scratch(
    qapp: QApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    clock = [now]
    monkeypatch.setattr(charts, "time", SimpleNamespace(time=lambda: clock[0]))
    store = SeriesStore(capacity=1200)
    for k in range(1000):  # a wave with a spike, older than the 15-minute window in part
        store.add("t", now - 1000 + k, {"cpu_percent": (k * 7) % 50 + (90 if k == 500 else 0)})
    chart = Chart(store, "CPU", unit="%", interval_ms=10_000_000)
    chart.resize(600, 300)
    chart.set_window(900)
    chart.set_lines([Line("t", "cpu_percent", "CPU")])
    for k in range(300):  # past a whole bucket, past the ring's capacity
        clock[0] = now + k * 0.5
        store.add("t", clock[0], {"cpu_percent": float(k % 11)})
        chart.redraw()
    drawn = _points(chart)
    chart.redraw(force=True)
    assert drawn == _points(chart)
    xs = [x for x, _ in drawn[0]]
    assert xs == sorted(xs) and 40 < len(xs) < 1300
    assert max(y for _, y in drawn[0]) >= 90  # the spike survives decimation
    chart.close()
