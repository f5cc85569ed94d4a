"""Screenshots of the console's main views, for docs/screenshots/ (run by scripts/screenshots.sh).

Starts the console with an embedded master and agent in a temporary data directory, makes some
demo data through the console's own services (packages, two systems, deployed and started
instances, one that keeps failing), then shows each page and saves it as a PNG.

The master of this branch has no metrics yet (another issue builds them), so the CPU/RSS/IO
figures in the instance table and the charts are demo samples fed through the console's
`metrics` event handler, the same path the master's events take.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import qasync
from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.app import ConsoleApp, load_style  # noqa: E402

SERVICE = """\
import http.server, os, sys, time
if os.environ.get("CRASH"):
    print("connecting to the database...", flush=True)
    time.sleep(0.5)
    print("fatal: database refused the connection", file=sys.stderr, flush=True)
    sys.exit(3)
port = int(sys.argv[sys.argv.index("--port") + 1])
try:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), None)
    server.server_close()
except OSError:
    port = 0  # a second instance on the same node takes any free port
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok\\n")
    def log_message(self, fmt, *args):
        print("GET", self.path, flush=True)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
print("listening on", httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


def package(dest: Path, name: str, version: str, description: str) -> Path:
    manifest = {
        "name": name,
        "version": version,
        "description": description,
        "entrypoint": "bin/run",
        "stop_timeout": 5,
        "log_paths": {"Access Log": "logs/access.log"},
    }
    path = dest / f"{name}-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, content in {
            "service.json": json.dumps(manifest),
            "bin/run": f'#!/bin/sh\nexec "{sys.executable}" "$(dirname "$0")/service.py" "$@"\n',
            "bin/service.py": SERVICE,
        }.items():
            info = zipfile.ZipInfo(entry)
            info.external_attr = (0o755 if entry.startswith("bin/") else 0o644) << 16
            zf.writestr(info, content)
    return path


async def until(pred, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(str(pred))


async def demo_data(app: ConsoleApp, work: Path) -> dict[str, str]:
    client = app.session.require()
    await until(
        lambda: len(app.fleet.nodes) >= 1 and app.fleet.nodes.row_at(0)["status"] == "online"
    )
    node = app.fleet.nodes.key_at(0)
    await app.fleet.set_node_labels(node, {"zone": "eu-1", "role": "app"})
    pkgs = work / "pkgs"
    pkgs.mkdir()
    for name, version, desc in (
        ("postgres-proxy", "1.4.2", "Connection pooler in front of the database"),
        ("orders-api", "2.0.0", "Orders REST API"),
        ("orders-api", "2.1.0", "Orders REST API"),
        ("storefront", "3.2.1", "Public web shop"),
        ("billing-worker", "0.9.0", "Invoices and payment retries"),
    ):
        await app.uploads.upload_one(package(pkgs, name, version, desc))
    port = 18400 + random.randint(0, 500)
    shop = await client.create_system("shop", "The web shop: proxy, API and storefront")
    billing = await client.create_system("billing", "Invoicing")
    mods = [
        (shop.id, "db-proxy", "postgres-proxy", 1, {}),
        (shop.id, "api", "orders-api", 2, {}),
        (shop.id, "web", "storefront", 3, {}),
        (billing.id, "worker", "billing-worker", 1, {"CRASH": "1"}),
    ]
    ids: dict[str, str] = {}
    for n, (sid, name, pkg, order, env) in enumerate(mods):
        m = await client.create_module(sid, name, pkg, None, order, env, ["--port", str(port + n)])
        count = 2 if name == "api" else 1
        for _ in range(count):
            inst = await client.deploy(m.id, node)
            ids.setdefault(name, inst.id)
    await until(lambda: all(r.get("state") == "stopped" for r in app.fleet.instances.rows()), 90)
    await app.fleet.start_system(shop.id)
    await client.start_instance(ids["worker"])
    await until(
        lambda: (app.fleet.instances.row(ids["worker"]) or {}).get("state") in ("exited", "failed"),
        30,
    )
    ids["shop"] = shop.id
    return ids


def demo_metrics(app: ConsoleApp) -> None:
    """Feed 60 minutes of plausible samples through the `metrics` event handler."""
    now = time.time()
    rng = random.Random(7)
    # Charts keep series only for what they watch (their history comes from the master).
    app.metrics.watched.update(app.fleet.instances.key_list())
    app.metrics.watched.update(app.fleet.nodes.key_list())
    for n, row in enumerate(app.fleet.instances.rows()):
        running = row.get("state") == "running"
        base_cpu = 3 + 9 * n
        base_rss = (40 + 25 * n) * (1 << 20)
        for k in range(3600, -1, -5):
            ts = now - k
            wave = math.sin((ts / 240.0) + n)
            sample = {
                "instance_id": row["id"],
                "ts": ts,
                "cpu_percent": max(0.0, base_cpu + 4 * wave + rng.random() * 3) if running else 0.0,
                "rss_bytes": base_rss * (1 + 0.1 * wave) if running else 0.0,
                "read_bps": max(0.0, 20_000 + 15_000 * wave + rng.random() * 8000)
                if running
                else 0.0,
                "write_bps": max(0.0, 60_000 + 40_000 * math.cos(ts / 300.0) + rng.random() * 9000)
                if running
                else 0.0,
            }
            app.session.dispatch("metrics", sample)
    for row in app.fleet.nodes.rows():
        for k in range(3600, -1, -5):
            ts = now - k
            app.session.dispatch(
                "metrics",
                {
                    "node_id": row["id"],
                    "ts": ts,
                    "cpu_percent": 25 + 15 * math.sin(ts / 400.0) + rng.random() * 6,
                    "mem_percent": 38 + 4 * math.sin(ts / 900.0),
                    "net_rx_bps": 200_000 + 90_000 * math.sin(ts / 200.0) + rng.random() * 30_000,
                    "net_tx_bps": 120_000 + 50_000 * math.cos(ts / 250.0) + rng.random() * 20_000,
                },
            )


async def shoot(app: ConsoleApp, out: Path, name: str, settle: float = 0.8) -> None:
    await asyncio.sleep(settle)
    for chart_panel in (app.instances_page.charts, app.nodes_page.charts):
        for chart in (chart_panel.cpu, chart_panel.mem, chart_panel.io):
            chart.redraw(force=True)
    QApplication.processEvents()
    path = out / f"{name}.png"
    app.window.grab().save(str(path))
    print("saved", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, flush=True)


async def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gdos-shots-"))
    qapp = QApplication.instance()
    assert isinstance(qapp, QApplication)
    settings = QSettings(str(work / "console.ini"), QSettings.Format.IniFormat)
    app = ConsoleApp(settings, load_style(qapp), work / "embedded")
    w = app.window
    w.resize(1440, 880)
    w.show()
    try:
        await shoot(app, out, "start")
        if not await app.start_embedded():
            print("the embedded master did not start", file=sys.stderr)
            return 1
        ids = await demo_data(app, work)
        demo_metrics(app)
        app.fleet.instances.flush()
        w.show_page("overview")
        await shoot(app, out, "overview")
        w.show_page("nodes")
        app.nodes_page.table.select_key(app.fleet.nodes.key_at(0))
        await shoot(app, out, "nodes", 1.5)
        w.show_page("packages")
        await shoot(app, out, "packages")
        w.show_page("systems")
        app.systems_page.select("system", ids["shop"])
        await shoot(app, out, "systems")
        w.show_page("instances")
        app.instances_page.table.view.sortByColumn(
            app.fleet.instances.column("cpu_percent"), Qt.SortOrder.DescendingOrder
        )
        app.instances_page.table.select_key(ids["api"])
        app.instances_page.charts.buttons.button(900).click()
        await shoot(app, out, "instances", 1.5)
        w.show_page("logs")
        app.logs_page.show_instance(ids["worker"])
        await shoot(app, out, "logs", 1.5)
        w.show_page("alerts")
        await shoot(app, out, "alerts")
        w.show_page("audit")
        await app.audit_page.load()
        await shoot(app, out, "audit")
        w.show_page("users")
        await shoot(app, out, "users")
        return 0
    finally:
        await app.shutdown()
        stop_services(work)
        shutil.rmtree(work, ignore_errors=True)


def stop_services(work: Path) -> None:
    """The demo services outlive the agent by design; end the ones started under `work`."""
    prefix = str(work.resolve())
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if "GDOS_INSTANCE_ID" in proc.environ() and proc.cwd().startswith(prefix):
                proc.kill()


if __name__ == "__main__":
    QCoreApplication.setOrganizationName("gdos-screenshots")
    qapp = QApplication(sys.argv[:1])
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    sys.exit(qasync.run(main(target)))
