"""Console benchmark: a 10,000-row live instance table, and 8 x 3,600-point charts.

    .venv/bin/python bench/console_table.py              # about three minutes; prints the figures
    .venv/bin/python bench/console_table.py --ticks 20 --frames 120 --profile
    .venv/bin/python bench/console_table.py --paint-ab --base /work/main --ticks 200

Table. A recorded event stream is replayed at 1 Hz over a real WebSocket, from another process
(so its cost is not the console's), in the master's own shapes: `metrics` events as
`metrics:<id>` subscriptions deliver them (`{"id","kind":"instance","node_id","ts",...}`), in
the batched frames the master sends a console that asked for `{"batch": true}` (at most 1,000
events a frame), plus 1 % of the instances changing state each second (full `instance` bodies).
The console takes it the way the app does: `Session` reads and parses the stream on its own
thread (services/stream.py), the GUI thread drains the inbox, `FleetService` feeds
`InstanceTableModel` (live figures in one dict update, one ranged `dataChanged` per tick), and a
`TablePanel` (1400 x 900, the app's style sheet, sorted by name, behind the filter proxy) repaints
what changed, offscreen (raster).

GUI-thread time per tick = the GUI thread's CPU time over each 1-second tick (`time.thread_time`
in that thread: draining, dispatching, merging, flushing, the proxy, painting, Qt's own event
handling). Target < 16 ms (one frame at 60 Hz), at the median and the p95. The parts (drain,
flush, paint) are timed separately, median and p95; the stream thread's CPU is reported too
(it shares the GIL). Runs:
- every row's figures each second (10,000 samples a tick): more than a master sends today, which
  caps a console at 256 `metrics:<id>` keys, but what a fleet-wide topic would send;
- 240 rows' figures each second: what the console subscribes to in a large fleet (the rows in
  view; see services/metrics.py);
- every row live, the table sorted by CPU (the order follows on a 2 s timer, not every tick);
- 240 rows live, the table sorted by CPU: a re-sort reads only the rows that changed since the
  last one and merges them into the order;
- the naive reference: one model reset per tick.

Charts: one chart widget with 8 lines of 3,600 points each (60 minutes at 1 Hz); every frame
appends a sample to each line, redraws and paints. Target >= 30 fps, overall and at the p95
frame time. With min/max decimation to the plot's pixel width (what the console does) and
without.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import math
import os
import pstats
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME_EVENTS = 1000  # the master's MAX_BATCH: events per frame in batch mode
STATES = ["running", "running", "running", "stopped", "starting", "stopping", "exited"]


def p95(xs: list[float]) -> float:
    """The 95th percentile (nearest rank below), as the tick figures report it."""
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def instances_of(rows: int, nodes: int = 100) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{n:012x}",
            "system_id": f"s{n % 40}",
            "module_id": f"m{n % 200}",
            "node_id": f"n{n % nodes:03d}",
            "name": f"svc-{n % 200}-{n // 200}",
            "state": "running",
            "desired_state": "running",
            "health": "healthy",
            "pid": 10_000 + n,
            "started_at": "2026-11-27T10:00:00Z",
            "restarts": 0,
            "exit_code": None,
            "last_error": None,
            "adopted": False,
            "version": "1.0.0",
            "health_detail": None,
        }
        for n in range(rows)
    ]


def record_stream(path: Path, rows: int, ticks: int, followed: list[str] | None) -> None:
    """`ticks` seconds of events: one line per tick, a JSON list of frame texts. Metrics for
    every instance, or for the `followed` ones."""
    rng = random.Random(42)
    instances = instances_of(rows)
    live = instances if followed is None else [i for i in instances if i["id"] in set(followed)]
    t0 = time.time()
    with open(path, "w") as f:
        for tick in range(ticks):
            events = []
            for inst in live:
                events.append(
                    {
                        "topic": "metrics",
                        "data": {
                            "ts": iso(t0 + tick),
                            "cpu_percent": round(rng.random() * 100, 2),
                            "rss_bytes": rng.randrange(20, 2000) << 20,
                            "read_bps": rng.randrange(0, 5 << 20),
                            "write_bps": rng.randrange(0, 5 << 20),
                            "threads": rng.randrange(1, 64),
                            "id": inst["id"],
                            "kind": "instance",
                            "node_id": inst["node_id"],
                        },
                    }
                )
            for n in rng.sample(range(rows), rows // 100):
                events.append(
                    {"topic": "instance", "data": dict(instances[n], state=rng.choice(STATES))}
                )
            rng.shuffle(events)
            frames = [
                "[" + ",".join(json.dumps(e, separators=(",", ":")) for e in chunk) + "]"
                for chunk in (
                    events[i : i + FRAME_EVENTS] for i in range(0, len(events), FRAME_EVENTS)
                )
            ]
            f.write(json.dumps(frames) + "\n")


# -- the replay server (a separate process) ---------------------------------------------


def serve(path: Path, port: int) -> None:
    """Send each recorded tick's frames once per second to whoever connects."""
    import websockets
    from websockets.asyncio.server import ServerConnection

    ticks = [json.loads(line) for line in path.read_text().splitlines()]

    async def handler(ws: ServerConnection) -> None:
        async def drain() -> None:
            async for _ in ws:  # subscriptions and {"batch": true}: accepted, ignored
                pass

        reader = asyncio.create_task(drain())
        await asyncio.sleep(1.0)
        start = time.monotonic()
        for n, frames in enumerate(ticks):
            for text in frames:
                await ws.send(text)
            await asyncio.sleep(max(0.0, start + n + 1 - time.monotonic()))
        await ws.send(json.dumps({"topic": "bench", "data": {"done": True}}))
        await asyncio.sleep(1.0)
        reader.cancel()

    async def main() -> None:
        async with websockets.serve(handler, "127.0.0.1", port, max_size=None):
            print("ready", flush=True)
            parent = os.getppid()
            while os.getppid() == parent:  # never outlive the benchmark, even if it crashed
                await asyncio.sleep(1.0)

    asyncio.run(main())


KEEP: list[Any] = []


class NoTicks(Exception):
    """A run measured no whole 1-second window."""


COLLECTOR: list[Any] = []  # the app's GuiGarbageCollector: its time is a part of a tick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the table --------------------------------------------------------------------------


def thread_cpu(native_id: int) -> float:
    import psutil

    for t in psutil.Process().threads():
        if t.id == native_id:
            return float(t.user_time + t.system_time)
    return 0.0


def bench_table(
    rows: int,
    ticks: int,
    live: int,
    sort_by: str = "name",
    naive: bool = False,
    profile: bool = False,
) -> dict[str, Any]:
    import qasync
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from console.client import Client
    from console.models.rows import InstanceRow
    from console.services.fleet import FleetService
    from console.services.session import Session
    from console.ui.table_panel import TablePanel

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    session = Session()
    fleet = FleetService(session)  # the app's own tick (100 ms)
    session.resynced.disconnect()  # no master to reload from: the rows are set below
    fleet.system_names = {f"s{n}": f"system-{n}" for n in range(40)}
    fleet.node_names = {f"n{n:03d}": f"host-{n:03d}" for n in range(100)}
    model = fleet.instances
    model.set_rows(fleet.enrich(cast(InstanceRow, dict(i))) for i in instances_of(rows))
    panel = TablePanel(model, "bench")
    panel.resize(1400, 900)
    panel.show()
    panel.view.sortByColumn(model.column(sort_by), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    # What a console subscribes to when not every row fits the budget: the rows in view.
    followed = [panel.proxy.key_at(r) for r in range(min(live, panel.proxy.rowCount()))]

    tmp = Path(tempfile.mkdtemp(prefix="gdos-console-bench-"))
    path = tmp / "events.jsonl"
    record_stream(path, rows, ticks, followed if live < rows else None)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(path), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"

    parts: dict[str, float] = {"drain": 0.0, "flush": 0.0}
    drain, flush = session.drain, model.flush

    def timed_drain() -> int:
        t = time.thread_time()
        n = drain()
        parts["drain"] += time.thread_time() - t
        return n

    def timed_flush() -> int:
        t = time.thread_time()
        n = flush() if not naive else 0
        if naive:  # the naive way: everything again, one reset per tick
            model._pending = type(model._pending)()
            model.set_rows(model.rows())
        parts["flush"] += time.thread_time() - t
        return n

    session.drain = timed_drain  # type: ignore[method-assign]
    parts["gc"] = 0.0
    for collector in COLLECTOR:
        check = collector.check

        def timed_check(check: Any = check) -> int:
            t = time.thread_time()
            n = check()
            parts["gc"] += time.thread_time() - t
            return int(n)

        collector._timer.timeout.disconnect()
        collector._timer.timeout.connect(timed_check)
    model._timer.timeout.disconnect()
    model._timer.timeout.connect(timed_flush)

    done = asyncio.Event()
    session.on("bench", lambda data: done.set())
    per_tick: list[float] = []
    part_ticks: dict[str, list[float]] = {"drain": [], "flush": [], "paint": [], "gc": []}
    resorts_before = model.resorts
    ready_before = getattr(model, "ready_resorts", 0)  # a base checkout may not have it
    samples: list[tuple[float, float, float, float, int, float, int]] = []
    profiler = cProfile.Profile(time.thread_time) if profile else None  # GUI-thread CPU

    def sample() -> None:
        samples.append(
            (
                time.thread_time(),
                parts["drain"],
                parts["flush"],
                panel.view.paint_seconds,
                model.resorts,
                parts["gc"],
                panel.view.paints,
            )
        )

    async def run() -> dict[str, Any]:
        session.start_stream(Client(f"http://127.0.0.1:{port}", token="bench"))
        assert session.stream is not None
        stream_thread = session.stream._thread
        timer = QTimer()
        timer.setInterval(1000)
        timer.timeout.connect(sample)
        await asyncio.sleep(1.5)  # connected, first frames on their way
        sample()
        timer.start()
        cpu0 = thread_cpu(stream_thread.native_id or 0)
        t0 = time.monotonic()
        if profiler:
            profiler.enable()
        await asyncio.wait_for(done.wait(), ticks + 30)
        if profiler:
            profiler.disable()
        elapsed = time.monotonic() - t0
        timer.stop()
        stream_cpu = thread_cpu(stream_thread.native_id or 0) - cpu0
        await session.logout(quiet=True)
        return {"elapsed": elapsed, "stream_cpu": stream_cpu}

    loop = qasync.QEventLoop(app)
    try:
        out = loop.run_until_complete(run())
    finally:
        loop.close()
        server.kill()
        server.wait()
        panel.close()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    # Kept alive to the end: if the cyclic GC freed these QObjects later, it could do so on the
    # next run's stream thread, and Qt aborts when timers die on a thread not their own.
    KEEP.append((session, fleet, model, panel))
    resorted: list[bool] = []
    paint_events: list[int] = []  # the view's paint events per tick
    for a, b in itertools.pairwise(samples):
        per_tick.append(b[0] - a[0])
        part_ticks["drain"].append(b[1] - a[1])
        part_ticks["flush"].append(b[2] - a[2])
        part_ticks["paint"].append(b[3] - a[3])
        part_ticks["gc"].append(b[5] - a[5])
        paint_events.append(b[6] - a[6])
        resorted.append(b[4] > a[4])
    # The first and last windows are partial (the stream starts and ends inside them).
    per_tick, resorted = per_tick[1:-1] or per_tick, resorted[1:-1] or resorted
    paint_events = paint_events[1:-1] or paint_events
    for k in part_ticks:
        part_ticks[k] = part_ticks[k][1:-1] or part_ticks[k]
    if not per_tick:  # no whole window (the naive run's resets can outlast the run)
        raise NoTicks(f"no whole tick was measured ({len(samples)} samples); try more --ticks")
    plain = [t for t, r in zip(per_tick, resorted, strict=True) if not r] or per_tick
    with_resort = [t for t, r in zip(per_tick, resorted, strict=True) if r]
    # The same parts over the ticks with a re-sort only, and what no part covers (Qt's own
    # event handling, timers, the proxy's signals).
    part_ticks["other"] = [
        t - sum(part_ticks[k][n] for k in ("drain", "flush", "paint", "gc"))
        for n, t in enumerate(per_tick)
    ]
    resort_parts = {
        k: [v for v, r in zip(vs, resorted, strict=True) if r] for k, vs in part_ticks.items()
    }
    result = {
        "rows": rows,
        "live": live,
        "sort_by": sort_by,
        "naive": naive,
        "ticks": len(per_tick),
        "events_per_tick": live + rows // 100,
        "median_ms": statistics.median(plain) * 1000,
        "p95_ms": p95(plain) * 1000,
        "max_ms": max(plain) * 1000,
        "resort_tick_ms": statistics.median(with_resort) * 1000 if with_resort else None,
        "resort_tick_p95_ms": p95(with_resort) * 1000 if with_resort else None,
        "parts_ms": {k: statistics.median(v) * 1000 for k, v in part_ticks.items() if v},
        "parts_p95_ms": {k: p95(v) * 1000 for k, v in part_ticks.items() if v},
        "resort_parts_ms": {k: statistics.median(v) * 1000 for k, v in resort_parts.items() if v},
        "stream_cpu_ms_per_s": out["stream_cpu"] / out["elapsed"] * 1000,
        "resorts": model.resorts - resorts_before,
        "ready_resorts": getattr(model, "ready_resorts", 0) - ready_before,
        "paints": panel.view.paints,
        "paints_per_tick": statistics.median(
            [p for p, r in zip(paint_events, resorted, strict=True) if not r] or [0]
        ),
        "paints_per_resort_tick": statistics.median(
            [p for p, r in zip(paint_events, resorted, strict=True) if r] or [0]
        ),
    }
    if profiler:
        result["profile"] = profiler
    return result


def bench_resort(rows: int, ticks: int) -> dict[str, Any]:
    """A re-sort tick without the stream: a 10,000-row panel sorted by CPU, every row's sample
    new each tick (written on another thread, as the stream thread does, which then works out
    the order where the console does so), a re-sort forced every tick; the GUI thread's CPU
    time over the flush and the repaint."""
    import threading

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from console.models.rows import InstanceRow
    from console.models.tables import InstanceTableModel
    from console.services.stream import LiveFigures
    from console.ui.table_panel import TablePanel

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    model = InstanceTableModel(resort_ms=0)
    model.set_rows(cast("list[InstanceRow]", instances_of(rows)))
    live = LiveFigures()
    order = getattr(live, "order", None)  # a checkout without it sorts on the GUI thread
    if order is not None:
        order.attend(lambda: None)  # a stream thread attends: the worker below computes
        model.attach_live(live.samples, order)
    else:
        model.attach_live(live.samples)
    panel = TablePanel(model, "bench-resort")
    panel.resize(1400, 900)
    panel.show()
    panel.view.sortByColumn(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    keys = model.key_list()
    rng = random.Random(7)
    per_tick: list[float] = []
    ready_before = getattr(model, "ready_resorts", 0)

    def stream_side() -> None:
        for key in keys:
            live.put(key, {"id": key, "cpu_percent": round(rng.random() * 100, 2), "rss_bytes": 1})
        if order is not None:
            order.compute()

    for _ in range(ticks):
        worker = threading.Thread(target=stream_side)
        worker.start()
        worker.join()
        model.live_changed(live.take())
        t = time.thread_time()
        model.flush()
        app.processEvents()
        per_tick.append(time.thread_time() - t)
    panel.close()
    KEEP.append((model, panel, live))
    per_tick = per_tick[2:]  # the first ticks format every visible cell once
    return {
        "median_ms": statistics.median(per_tick) * 1000,
        "p95_ms": p95(per_tick) * 1000,
        "ticks": len(per_tick),
        "ready": getattr(model, "ready_resorts", 0) - ready_before,
    }


def bench_paint_ab(rows: int, ticks: int, base: Path) -> dict[str, list[float]]:
    """The view's paint after a re-sort of every row by CPU, without the stream, this checkout's
    paint and `base`'s (its console/ui/tableview.py) alternating tick by tick in one process, so
    the machine's load weighs on both alike; GUI-thread CPU per paint."""
    import importlib.util
    import threading

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from console.models.rows import InstanceRow
    from console.services.fleet import FleetService
    from console.services.session import Session
    from console.services.stream import LiveFigures
    from console.ui.table_panel import TablePanel

    spec = importlib.util.spec_from_file_location(
        "base_tableview", base / "console/ui/tableview.py"
    )
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    session = Session()
    fleet = FleetService(session)
    session.resynced.disconnect()
    fleet.system_names = {f"s{n}": f"system-{n}" for n in range(40)}
    fleet.node_names = {f"n{n:03d}": f"host-{n:03d}" for n in range(100)}
    model = fleet.instances
    model._timer.timeout.disconnect()  # flushed below, once per tick
    model._resort_ms = 0  # a re-sort every tick
    model.set_rows(fleet.enrich(cast(InstanceRow, dict(i))) for i in instances_of(rows))
    live = LiveFigures()
    live.order.attend(lambda: None)  # the worker below computes the order
    model.attach_live(live.samples, live.order)
    panel = TablePanel(model, "bench-paint")
    panel.resize(1400, 900)
    panel.show()
    panel.view.sortByColumn(model.column("cpu_percent"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    view, keys, rng = panel.view, model.key_list(), random.Random(7)
    view_any = cast(Any, view)

    def stream_side() -> None:
        for key in keys:
            sample = {
                "id": key,
                "cpu_percent": round(rng.random() * 100, 2),
                "rss_bytes": rng.randrange(20, 2000) << 20,
                "read_bps": rng.randrange(0, 5 << 20),
                "write_bps": rng.randrange(0, 5 << 20),
            }
            live.put(key, sample)
        live.order.compute()

    result: dict[str, list[float]] = {"this": [], "base": []}
    widths: dict[str, dict[str, int]] = {"this": view_any._widths, "base": {}}
    for tick in range(ticks):
        worker = threading.Thread(target=stream_side)
        worker.start()
        worker.join()
        model.live_changed(live.take())
        model.flush()
        which = "base" if tick % 2 else "this"
        view_any._widths = widths[which]  # each its own cache of text widths
        if which == "base":
            view_any._paint = lambda region: other.TableView._paint(view, region)
        before = view.paint_seconds
        app.processEvents()
        if which == "base":
            del view_any._paint
        widths[which] = view_any._widths
        result[which].append(view.paint_seconds - before)
    view_any._widths = widths["this"]
    panel.close()
    KEEP.append((session, fleet, model, panel, live))
    return {k: v[2:] for k, v in result.items()}  # the first ticks format every visible cell


# -- the charts -------------------------------------------------------------------------


def bench_charts(
    frames: int, decimation: bool, lines: int = 8, points: int = 3600
) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    from console.models.series import SeriesStore
    from console.ui.charts import Chart, Line

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    store = SeriesStore(capacity=points)
    now = time.time()
    ts = [now - points + k for k in range(points)]
    for n in range(lines):
        noise = random.Random(n)
        s = store.get(f"t{n}", "cpu_percent")
        s.extend(ts, [50 + 40 * math.sin(t / (50.0 + 7 * n)) + noise.random() * 5 for t in ts])
    chart = Chart(store, "bench", unit="%", interval_ms=10_000_000)
    chart.decimation = decimation
    chart.set_window(3600)
    chart.set_lines([Line(f"t{n}", "cpu_percent", f"line {n}") for n in range(lines)])
    chart.resize(1200, 500)
    chart.show()
    app.processEvents()
    drawn = 0
    redraw = paint = 0.0
    per_frame: list[float] = []
    t0 = time.perf_counter()
    for k in range(frames):
        t_frame = time.perf_counter()
        for n in range(lines):
            store.get(f"t{n}", "cpu_percent").append(now + k + 1, 50.0 + n)
        t1 = time.perf_counter()
        drawn = chart.redraw()
        t2 = time.perf_counter()
        chart.view.viewport().repaint()
        app.processEvents()
        t3 = time.perf_counter()
        redraw += t2 - t1
        paint += t3 - t2
        per_frame.append(t3 - t_frame)
    elapsed = time.perf_counter() - t0
    chart.close()
    return {
        "decimation": decimation,
        "frames": frames,
        "fps": frames / elapsed,
        "ms_per_frame": elapsed / frames * 1000,
        "median_frame_ms": statistics.median(per_frame) * 1000,
        "p95_frame_ms": p95(per_frame) * 1000,
        "fps_p95": 1 / p95(per_frame),  # the frame rate the slowest 5 % of frames hold
        "redraw_ms": redraw / frames * 1000,
        "paint_ms": paint / frames * 1000,
        "points_in_window": drawn,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--ticks", type=int, default=30)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--profile", action="store_true", help="cProfile the GUI thread (each run)")
    p.add_argument(
        "--only",
        help="run only the table runs whose name contains this (e.g. 'sorted'), and no charts",
    )
    p.add_argument("--no-charts", action="store_true", help="leave the charts out")
    p.add_argument("--charts-only", action="store_true", help="only the charts")
    p.add_argument(
        "--resort-only",
        action="store_true",
        help="only a forced re-sort per tick of every row, without the stream (quick A/B)",
    )
    p.add_argument(
        "--paint-ab",
        action="store_true",
        help="only the view's paint after a re-sort, this checkout's and --base's alternated",
    )
    p.add_argument(
        "--base", type=Path, help="measure the console of this checkout (e.g. /work/main) instead"
    )
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if args.paint_ab and not args.base:
        p.error("--paint-ab compares with --base's table view")
    if args.base and not args.paint_ab:  # the other checkout's console package, this bench
        sys.path.insert(0, str(args.base.resolve()))
    from PySide6.QtWidgets import QApplication

    from console.app import load_style
    from console.gui_gc import GuiGarbageCollector

    app = QApplication([])
    load_style(app)
    collector = GuiGarbageCollector(app)
    collector.start()  # as the console does
    COLLECTOR.append(collector)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} CPUs)")
    if args.paint_ab:
        ab = bench_paint_ab(args.rows, args.ticks, args.base)
        for name, xs in ab.items():
            print(
                f"paint after a re-sort, {name}: GUI thread per paint median "
                f"{statistics.median(xs) * 1000:.2f} ms, p95 {p95(xs) * 1000:.2f} ms, "
                f"min {min(xs) * 1000:.2f} ms ({len(xs)} paints)",
                flush=True,
            )
        print(f"load after: {os.getloadavg()[0]:.2f}")
        return 0
    if args.resort_only:
        r = bench_resort(args.rows, args.ticks)
        print(
            f"re-sort of every row by CPU, without the stream: GUI thread per tick median "
            f"{r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms ({r['ticks']} ticks, "
            f"{r['ready']} with the stream thread's order)",
            flush=True,
        )
        print(f"load after: {os.getloadavg()[0]:.2f}")
        return 0
    runs = [
        ("every row's figures each second", dict(live=args.rows)),
        ("240 subscribed rows' figures each second", dict(live=240)),
        ("every row's figures, table sorted by CPU", dict(live=args.rows, sort_by="cpu_percent")),
        (
            "240 subscribed rows' figures, table sorted by CPU",
            dict(live=240, sort_by="cpu_percent"),
        ),
        ("naive reference: a model reset per tick", dict(live=args.rows, naive=True)),
    ]
    if args.only or args.charts_only:
        runs = [(name, kw) for name, kw in runs if args.only and args.only in name]
    for name, kw in runs:
        kw["profile"] = args.profile
        ticks = args.ticks if not kw.get("naive") else max(6, args.ticks // 4)
        try:
            r = bench_table(args.rows, ticks, **kw)
        except NoTicks as exc:
            print(f"table, {name}: {exc}", flush=True)
            continue
        parts = ", ".join(
            f"{k} {v:.1f} (p95 {r['parts_p95_ms'][k]:.1f})" for k, v in r["parts_ms"].items()
        )
        if r["naive"]:  # a reset takes longer than a tick: its own cost is the figure
            reset = r["parts_ms"]["flush"] + r["parts_ms"]["paint"]
            print(f"table, {name}: {r['rows']} rows: {reset:.0f} ms per tick [{parts}]", flush=True)
            continue
        resort = (
            f"; ticks with a re-sort: median {r['resort_tick_ms']:.1f} ms, "
            f"p95 {r['resort_tick_p95_ms']:.1f} ms ({r['resorts']} re-sorts, "
            f"{r['ready_resorts']} with the stream thread's order; "
            f"{r['paints_per_resort_tick']:g} paint events a tick; parts "
            + ", ".join(f"{k} {v:.1f}" for k, v in r["resort_parts_ms"].items())
            + ")"
            if r["resort_tick_ms"] is not None
            else ""
        )
        print(
            f"table, {name}: {r['rows']} rows, {r['events_per_tick']} events/tick, "
            f"{r['ticks']} ticks: GUI thread per tick median {r['median_ms']:.1f} ms, "
            f"p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms [{parts}; "
            f"{r['paints_per_tick']:g} paint events a tick]; "
            f"stream thread {r['stream_cpu_ms_per_s']:.0f} ms/s{resort}",
            flush=True,
        )
        if "profile" in r:
            stats = pstats.Stats(r["profile"])
            stats.sort_stats("tottime").print_stats(18)
    for dec in (True, False) if not (args.only or args.no_charts) else ():
        c = bench_charts(args.frames, dec)
        print(
            f"charts 8 x 3600, decimation {'on ' if dec else 'off'}: {c['fps']:.1f} fps "
            f"(p95 {c['fps_p95']:.1f} fps; frame median {c['median_frame_ms']:.1f} ms, "
            f"p95 {c['p95_frame_ms']:.1f} ms; "
            f"{c['ms_per_frame']:.1f} ms/frame: redraw {c['redraw_ms']:.1f}, paint "
            f"{c['paint_ms']:.1f}; {c['points_in_window']} points drawn per frame)",
            flush=True,
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
