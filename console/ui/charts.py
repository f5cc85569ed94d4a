"""Live charts: bounded series drawn on a timer (never per message), 5/15/60-minute windows.

A redraw adds only what came since the last one: the lines are drawn against a hidden time axis
that scrolls, under a fixed "minutes ago" axis, and are decimated into min/max buckets of fixed
sample numbers, so a bucket once drawn stays as it is until it leaves the window.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QValueAxis
from PySide6.QtCore import QMargins, QPointF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from console.models.series import Array, Series, SeriesStore, bucket_points

WINDOWS = {"5 min": 300, "15 min": 900, "60 min": 3600}
PALETTE = ["#1a73e8", "#d93025", "#1e8e3e", "#f9ab00", "#9334e6", "#12b5cb", "#e8710a", "#5f6368"]


@dataclass(frozen=True)
class Line:
    target: str
    field: str
    label: str


@dataclass
class _Drawn:
    """What one line shows: the points of the buckets of `per` samples up to sample number
    `done` (kept, their x does not change), then the samples after them as they are."""

    series: Series
    per: int
    done: int
    points: list[QPointF]


class Chart(QWidget):
    """One chart of several lines from a SeriesStore; `redraw()` runs on a timer."""

    def __init__(
        self,
        store: SeriesStore,
        title: str,
        unit_scale: float = 1.0,
        unit: str = "",
        parent: QWidget | None = None,
        interval_ms: int = 1000,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.scale = unit_scale
        self.unit = unit
        self.seconds = 300
        self.decimation = True  # min/max per pixel column: same picture, bounded cost
        self.lines: list[Line] = []
        self._series: list[QLineSeries] = []
        self._drawn: list[_Drawn | None] = []
        self._origin = time.time()  # x of the lines: minutes since then
        self.chart = QChart()
        self.chart.setTitle(title)
        self.chart.setMargins(QMargins(4, 4, 4, 4))
        self.chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        self.chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
        # The visible axis says "minutes ago" (now = 0) and stays put; the lines hang on a
        # hidden axis of minutes since `_origin` whose range follows the clock.
        self.x_axis = QValueAxis()
        self.x_axis.setLabelFormat("%.0f min")
        self.x_axis.setTickCount(6)
        self.x_axis.setRange(-self.seconds / 60, 0)
        self.time_axis = QValueAxis()
        self.time_axis.setVisible(False)
        self._top = 1.0
        self.y_axis = QValueAxis()
        self.y_axis.setLabelFormat("%.0f" + (" " + unit.replace("%", "%%") if unit else ""))
        self.y_axis.setRange(0, 1)
        self.chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        self.chart.addAxis(self.time_axis, Qt.AlignmentFlag.AlignBottom)
        self.chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self.view = QChartView(self.chart)
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def set_lines(
        self,
        lines: list[Line],
        unit: str | None = None,
        scale: float | None = None,
        title: str = "",
    ) -> None:
        if unit is not None:
            self.unit = unit
            self.y_axis.setLabelFormat("%.0f" + (" " + unit.replace("%", "%%") if unit else ""))
        if scale is not None:
            self.scale = scale
        if title:
            self.chart.setTitle(title)
        for s in self._series:
            self.chart.removeSeries(s)
        self._series, self.lines = [], list(lines)
        self._drawn = [None] * len(lines)
        for n, line in enumerate(lines):
            s = QLineSeries()
            s.setName(line.label)
            s.setPen(QPen(QColor(PALETTE[n % len(PALETTE)]), 1.5))
            s.setUseOpenGL(False)
            self.chart.addSeries(s)
            s.attachAxis(self.time_axis)
            s.attachAxis(self.y_axis)
            self._series.append(s)
        self.redraw(force=True)

    def set_window(self, seconds: int) -> None:
        self.seconds = seconds
        self.x_axis.setRange(-seconds / 60, 0)
        self.x_axis.setLabelFormat("%.1f min" if seconds < 600 else "%.0f min")
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> int:
        """Bring each line up to the current window; returns the points the lines hold."""
        now = time.time()
        # One point per pixel column on average (min and max of every two columns).
        buckets = max(50, int(self.chart.plotArea().width() or self.view.width() or 800) // 2)
        top = 0.0
        drawn = 0
        points: dict[int, list[QPointF]] = {}
        for n, line in enumerate(self.lines):
            if not self.store.has(line.target, line.field):
                continue
            series = self.store.get(line.target, line.field)
            ts, v = series.window(self.seconds, now)
            if len(v):
                top = max(top, max(v) * self.scale)
            per = max(1, len(ts) // buckets) if self.decimation else 1
            points[n] = self._update(n, series, ts, v, per, force)
            drawn += len(points[n])
        # Qt lays a line out again on each change of it or of its axis: the axis moves while
        # the lines are empty, so each is laid out once, with its new points.
        for n in points:
            self._series[n].clear()
        end = (now - self._origin) / 60.0
        self.time_axis.setRange(end - self.seconds / 60, end)
        for n, line_points in points.items():
            self._series[n].replace(line_points)
        nice = _nice(top)
        if nice != self._top or force:
            self._top = nice
            self.y_axis.setRange(0, nice)
            # Enough decimals that the five labels differ (0 - 1 KiB/s needs two).
            digits = 0 if nice >= 20 else 1 if nice >= 2 else 2
            unit = " " + self.unit.replace("%", "%%") if self.unit else ""
            self.y_axis.setLabelFormat(f"%.{digits}f{unit}")
        return drawn

    def _points(self, ts: Array, v: Array) -> list[QPointF]:
        origin, scale = self._origin, self.scale
        return [QPointF((t - origin) / 60.0, y * scale) for t, y in zip(ts, v, strict=True)]

    def _update(
        self, n: int, series: Series, ts: Array, v: Array, per: int, force: bool
    ) -> list[QPointF]:
        """Line n's points: those kept, then the new buckets, then the samples after them."""
        drawn = self._drawn[n]
        new = None
        if not force and drawn is not None and drawn.series is series and drawn.per == per:
            new = series.since(drawn.done)
        if drawn is None or new is None:
            # Buckets start at multiples of `per` (sample numbers), the first one maybe before
            # the window: the points left of it are cut below, as they are when it scrolls.
            first = series.count - len(ts)  # the window's first sample number
            start = first - first % per
            if series.since(start) is None:  # that bucket's first samples are gone: the next
                start += per
            new = series.since(start) or (array("d"), array("d"))
            drawn = self._drawn[n] = _Drawn(series, per, start, [])
        nts, nv = new
        full = len(nts) // per * per
        drawn.points += self._points(*bucket_points(nts[:full], nv[:full], per))
        drawn.done += full
        if len(ts):  # points of samples that left the window go
            left = (ts[0] - self._origin) / 60.0
            points = drawn.points
            old = bisect_left(points, left, key=QPointF.x)
            if old:
                del points[:old]
        return drawn.points + self._points(nts[full:], nv[full:])


def _nice(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)  # pragma: no cover


class ChartPanel(QWidget):
    """CPU, memory and IO charts for one target, with the 5/15/60-minute switch."""

    def __init__(self, store: SeriesStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.title = QLabel("Pick an instance or a node")
        self.title.setObjectName("sectionTitle")
        top.addWidget(self.title, 1)
        self.buttons = QButtonGroup(self)
        for n, (label, seconds) in enumerate(WINDOWS.items()):
            b = QPushButton(label)
            b.setCheckable(True)
            b.setChecked(n == 0)
            b.setObjectName("windowButton")
            self.buttons.addButton(b, seconds)
            top.addWidget(b)
        self.buttons.idClicked.connect(self.set_window)
        lay.addLayout(top)
        self.notice = QLabel("")
        self.notice.setObjectName("notice")
        self.notice.hide()
        lay.addWidget(self.notice)
        self.cpu = Chart(store, "CPU", unit="%")
        self.mem = Chart(store, "Memory", unit="MiB", unit_scale=1 / (1 << 20))
        self.io = Chart(store, "IO", unit="KiB/s", unit_scale=1 / 1024)
        charts = QHBoxLayout()
        for c in (self.cpu, self.mem, self.io):
            c.setMinimumHeight(220)
            charts.addWidget(c)
        lay.addLayout(charts, 1)

    def set_window(self, seconds: int) -> None:
        for c in (self.cpu, self.mem, self.io):
            c.set_window(seconds)

    def show_target(self, kind: str, target: str, label: str) -> None:
        self.title.setText(f"{kind.capitalize()} {label}")
        if kind == "instance":
            self.cpu.set_lines([Line(target, "cpu_percent", "CPU")], "%", 1.0, "CPU")
            self.mem.set_lines(
                [Line(target, "rss_bytes", "RSS")], "MiB", 1 / (1 << 20), "Memory (RSS)"
            )
            self.io.set_lines(
                [Line(target, "read_bps", "read"), Line(target, "write_bps", "write")],
                "KiB/s",
                1 / 1024,
                "Disk IO",
            )
        else:
            self.cpu.set_lines([Line(target, "cpu_percent", "CPU")], "%", 1.0, "CPU")
            self.mem.set_lines([Line(target, "mem_percent", "memory")], "%", 1.0, "Memory")
            self.io.set_lines(
                [Line(target, "net_rx_bps", "in"), Line(target, "net_tx_bps", "out")],
                "KiB/s",
                1 / 1024,
                "Network",
            )

    def say(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))
