"""Console benchmark: a 10,000-row live instance table and 8 x 3,600-point charts.

    .venv/bin/python bench/console_table.py            # about a minute; prints the figures
    .venv/bin/python bench/console_table.py --ticks 30 --rows 10000 --frames 120

Table: a recorded event stream (generated once per run into a temp file: 10,000 instances on
100 nodes, one batched `metrics` event per node per second, plus 1 % state changes per second)
is replayed at 1 Hz through the console's real path: `json.loads` of each frame as the event
stream does, `Session.dispatch`, `FleetService` merging into `InstanceTableModel`, the
once-per-tick flush into ranged `dataChanged`, and a `QTableView` (1400 x 900, sorted by name,
behind the filter/sort proxy) repainting what changed (offscreen raster). GUI-thread time per tick = parse + dispatch + flush + paint. Target < 20 ms.
Also run: only 256 rows' metrics per second (what `metrics:<id>` subscriptions deliver; the
master caps a subscriber at 256 keys), and a model reset per tick, the naive way, as a reference.

Charts: one chart widget with 8 lines of 3,600 points each (60 minutes at 1 Hz); every frame a
new sample is appended to each line and the chart is redrawn and painted. Target >= 30 fps.
Run with min/max decimation to the pixel width (what the console does) and without it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PySide6.QtWidgets import QApplication

from console.models.series import SeriesStore
from console.services.fleet import FleetService
from console.services.session import Session
from console.ui.charts import Chart, Line
from console.ui.common import TablePanel

STATES = ["running", "running", "running", "stopped", "starting", "stopping", "exited"]


def record_stream(
    path: Path, rows: int, ticks: int, nodes: int = 100, live: int | None = None
) -> list[dict[str, Any]]:
    """Write `ticks` seconds of events (one JSON text per line, grouped by tick).

    `live` limits metrics to the first `live` instances (what a console subscribed to with
    `metrics:<id>` receives; the master caps a subscriber at 256 keys).
    """
    live = rows if live is None else live
    rng = random.Random(42)
    instances = [
        {
            "id": f"i{n:05d}",
            "system_id": f"s{n % 40}",
            "module_id": f"m{n % 200}",
            "node_id": f"n{n % nodes}",
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
        }
        for n in range(rows)
    ]
    t0 = time.time()
    with open(path, "w") as f:
        for tick in range(ticks):
            frames = []
            for node in range(nodes):
                samples = [
                    {
                        "instance_id": f"i{n:05d}",
                        "ts": t0 + tick,
                        "cpu_percent": round(rng.random() * 100, 1),
                        "rss_bytes": rng.randrange(20, 2000) << 20,
                        "read_bps": rng.randrange(0, 5 << 20),
                        "write_bps": rng.randrange(0, 5 << 20),
                        "threads": rng.randrange(1, 64),
                    }
                    for n in range(node, live, nodes)
                ]
                if not samples:
                    continue
                frames.append(
                    {"topic": "metrics", "data": {"node_id": f"n{node}", "samples": samples}}
                )
            for n in rng.sample(range(rows), rows // 100):
                inst = dict(instances[n], state=rng.choice(STATES))
                frames.append({"topic": "instance", "data": inst})
            f.write(json.dumps([json.dumps(fr, separators=(",", ":")) for fr in frames]) + "\n")
    return instances


def bench_table(
    rows: int, ticks: int, reset_reference: bool, live: int | None = None
) -> dict[str, Any]:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        t = time.perf_counter()
        instances = record_stream(path, rows, ticks, live=live)
        record_s = time.perf_counter() - t
        session = Session()
        fleet = FleetService(session, tick_ms=1_000_000)  # flushed by hand, once per tick
        fleet.system_names = {f"s{n}": f"system-{n}" for n in range(40)}
        fleet.node_names = {f"n{n}": f"host-{n:03d}" for n in range(100)}
        fleet.instances.set_rows(fleet.enrich(dict(i)) for i in instances)
        panel = TablePanel(fleet.instances, "bench")
        panel.resize(1400, 900)
        panel.show()
        panel.view.sortByColumn(
            fleet.instances.column("name"), panel.view.horizontalHeader().sortIndicatorOrder()
        )
        app.processEvents()
        per_tick: list[float] = []
        parts: dict[str, list[float]] = {"parse+dispatch": [], "flush": [], "paint": []}
        events = 0
        with open(path) as f:
            for line in f:
                frames = json.loads(line)
                t0 = time.perf_counter()
                for text in frames:
                    msg = json.loads(text)
                    session.dispatch(msg["topic"], msg["data"])
                t1 = time.perf_counter()
                if reset_reference:
                    fleet.instances._pending.changes.clear()  # the naive way: re-set everything
                    fleet.instances.set_rows(fleet.instances.rows())
                else:
                    fleet.instances.flush()
                t2 = time.perf_counter()
                # Qt repaints what the signals marked dirty (the changed cells that are visible),
                # exactly as in the app; processEvents delivers those paint events now.
                app.processEvents()
                t3 = time.perf_counter()
                events += len(frames)
                parts["parse+dispatch"].append(t1 - t0)
                parts["flush"].append(t2 - t1)
                parts["paint"].append(t3 - t2)
                per_tick.append(t3 - t0)
        panel.close()
        samples_per_tick = rows if live is None else live
        return {
            "rows": rows,
            "ticks": len(per_tick),
            "events_per_tick": events / max(1, len(per_tick)),
            "samples_per_tick": samples_per_tick,
            "record_s": record_s,
            "median_ms": statistics.median(per_tick) * 1000,
            "p95_ms": sorted(per_tick)[int(0.95 * (len(per_tick) - 1))] * 1000,
            "max_ms": max(per_tick) * 1000,
            "parts_ms": {k: statistics.median(v) * 1000 for k, v in parts.items()},
        }


def bench_charts(
    frames: int, decimation: bool, lines: int = 8, points: int = 3600
) -> dict[str, Any]:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    store = SeriesStore(capacity=points)
    now = time.time()
    ts = np.arange(now - points, now, 1.0)
    for n in range(lines):
        s = store.get(f"t{n}", "cpu_percent")
        s.extend(
            ts, 50 + 40 * np.sin(ts / (50.0 + 7 * n)) + np.random.default_rng(n).random(points) * 5
        )
    chart = Chart(store, "bench", unit="%", interval_ms=10_000_000)
    chart.decimation = decimation
    chart.set_window(3600)
    chart.set_lines([Line(f"t{n}", "cpu_percent", f"line {n}") for n in range(lines)])
    chart.resize(1200, 500)
    chart.show()
    app.processEvents()
    drawn = 0
    t0 = time.perf_counter()
    for k in range(frames):
        for n in range(lines):
            store.get(f"t{n}", "cpu_percent").append(now + k + 1, 50.0 + n)
        drawn = chart.redraw()
        chart.view.viewport().repaint()
        app.processEvents()
    elapsed = time.perf_counter() - t0
    chart.close()
    return {
        "decimation": decimation,
        "frames": frames,
        "fps": frames / elapsed,
        "ms_per_frame": elapsed / frames * 1000,
        "points_in_window": drawn,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--ticks", type=int, default=30)
    p.add_argument("--frames", type=int, default=120)
    args = p.parse_args()
    QApplication([])
    print(
        f"console benchmark: {args.rows} rows x {args.ticks} ticks; charts 8 x 3600 points, {args.frames} frames"
    )
    table = bench_table(args.rows, args.ticks, reset_reference=False)
    subscribed = bench_table(args.rows, args.ticks, reset_reference=False, live=256)
    reference = bench_table(args.rows, max(5, args.ticks // 3), reset_reference=True)
    for name, r in (
        ("every row's metrics each second (console)", table),
        ("256 subscribed rows' metrics each second (console)", subscribed),
        ("every row, model reset per tick (naive reference)", reference),
    ):
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts_ms"].items())
        print(
            f"table, {name}: {r['rows']} rows, {r['events_per_tick']:.0f} events ({r['samples_per_tick']} samples)"
            f"/tick: GUI-thread per tick median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
            f"max {r['max_ms']:.1f} ms  [{parts}]"
        )
    for dec in (True, False):
        c = bench_charts(args.frames, dec)
        print(
            f"charts 8 x 3600, decimation {'on ' if dec else 'off'}: {c['fps']:.1f} fps "
            f"({c['ms_per_frame']:.1f} ms/frame, {c['points_in_window']} points drawn per frame)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
