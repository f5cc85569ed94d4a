"""Screenshots of the console's main views, for docs/screenshots/ (run by scripts/screenshots.sh).

Starts the console with an embedded master and agent in a temporary data directory and makes
real demo data through the console's own services: packages, two systems, instances started by
a real batch operation, one that keeps failing, real CPU/RSS/IO from the services (some burn
CPU and hold memory), real logs, alert rules that really fire (one acknowledged, one silenced),
and a backup. It lets a couple of minutes of metrics accumulate, then shows each page and saves
it as a PNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
SETTLE = 100.0  # seconds of metrics before the pictures (the charts show the last 5 minutes)

from console.app import ConsoleApp, load_style  # noqa: E402

SERVICE = """\
import http.server, os, random, sys, threading, time
if os.environ.get("CRASH"):
    print("connecting to the database at db.internal:5432...", flush=True)
    time.sleep(0.5)
    print("fatal: database refused the connection (password authentication failed)",
          file=sys.stderr, flush=True)
    sys.exit(3)
busy = float(os.environ.get("BUSY", "0.02"))  # share of one core to burn
hold = bytearray(int(os.environ.get("HOLD_MIB", "8")) << 20)  # memory to hold (RSS)
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
        pass
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
print("listening on", httpd.server_address[1], flush=True)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
os.makedirs("../logs", exist_ok=True)
paths = ["/api/orders", "/api/orders/1042", "/api/cart", "/healthz", "/api/payments"]
n = 0
while True:
    start = time.monotonic()
    while time.monotonic() - start < busy:
        sum(i * i for i in range(2000))
    n += 1
    if n % 5 == 0:
        path = random.choice(paths)
        took = random.randint(2, 80)
        status = 200 if random.random() > 0.05 else 503
        line = time.strftime("%H:%M:%S") + f" GET {path} {status} {took} ms"
        print(line, flush=True)
        with open("../logs/access.log", "a") as log:
            log.write(line + "\\n")
        if status != 200:
            print(time.strftime("%H:%M:%S") + f" warning: upstream timeout on {path}",
                  file=sys.stderr, flush=True)
    time.sleep(max(0.0, 0.2 - busy))
"""


def package(dest: Path, name: str, version: str, description: str) -> Path:
    manifest = {
        "name": name,
        "version": version,
        "description": description,
        "entrypoint": "bin/run",
        "stop_timeout": 5,
        "log_paths": {"Access Log": "logs/access.log"},
        "restart": "on-failure",
        "restart_limit": 2,
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
    from console.message import bridge

    raise TimeoutError(f"{pred}: {bridge().history[-5:]}")


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
    port = 18400 + int(time.time()) % 500
    shop = await client.create_system("shop", "The web shop: proxy, API and storefront")
    billing = await client.create_system("billing", "Invoicing")
    mods = [
        (shop.id, "db-proxy", "postgres-proxy", 1, {"BUSY": "0.01", "HOLD_MIB": "24"}),
        (shop.id, "api", "orders-api", 2, {"BUSY": "0.05", "HOLD_MIB": "96"}),
        (shop.id, "web", "storefront", 3, {"BUSY": "0.12", "HOLD_MIB": "48"}),
        (billing.id, "worker", "billing-worker", 1, {"CRASH": "1"}),
    ]
    ids: dict[str, str] = {}
    for n, (sid, name, pkg, order, env) in enumerate(mods):
        m = await client.create_module(sid, name, pkg, None, order, env, ["--port", str(port + n)])
        for _ in range(2 if name == "api" else 1):
            inst = await client.deploy(m.id, node)
            ids.setdefault(name, inst.id)
    await until(lambda: all(r.get("state") == "stopped" for r in app.fleet.instances.rows()), 90)
    # Alert rules that fire for real: a failing worker, and the storefront's CPU.
    await app.alerts.save_rule(
        {
            "name": "worker failing",
            "metric": "state",
            "op": "==",
            "threshold": "failed",
            "for_seconds": 0,
            "scope": {"system_id": billing.id},
            "severity": "critical",
        }
    )
    await app.alerts.save_rule(
        {
            "name": "storefront busy",
            "metric": "cpu_percent",
            "op": ">",
            "threshold": 5,
            "for_seconds": 10,
            "scope": {"instance_id": ids["web"]},
            "severity": "warning",
        }
    )
    await app.alerts.save_rule(
        {
            "name": "api memory",
            "metric": "rss_bytes",
            "op": ">",
            "threshold": 2 << 30,
            "for_seconds": 60,
            "scope": {"system_id": shop.id},
            "severity": "critical",
        }
    )
    await app.operations.start_system(shop.id)  # a real batch operation, level by level
    await client.start_instance(ids["worker"])  # restarts twice, then stays `failed`

    def worker_failed() -> bool:
        row = app.fleet.instances.row(ids["worker"])
        return row is not None and row.get("state") == "failed"

    await until(worker_failed, 60)
    ids["shop"] = shop.id
    ids["billing"] = billing.id
    return ids


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
        w.show_page("instances")  # the table follows the live figures of the rows it shows
        print(f"letting {SETTLE:.0f} s of real metrics accumulate…", flush=True)
        await asyncio.sleep(SETTLE)
        await until(lambda: any(a.get("state") == "firing" for a in app.alerts.alerts.rows()))
        firing = [a for a in app.alerts.alerts.rows() if a.get("state") == "firing"]
        critical = [a for a in firing if a.get("severity") == "critical"]
        if critical:
            await app.alerts.ack([str(critical[0]["id"])])
        await app.alerts.silence(
            {
                "matcher": {"system_id": ids["billing"]},
                "duration_seconds": 4 * 3600,
                "comment": "billing DB migration tonight",
            }
        )
        await app.backups.create()
        w.show_page("overview")
        app.overview.refresh()
        await shoot(app, out, "overview")
        w.show_page("nodes")
        app.nodes_page.table.select_key(app.fleet.nodes.key_at(0))
        await shoot(app, out, "nodes", 2.0)
        w.show_page("packages")
        await shoot(app, out, "packages")
        w.show_page("systems")
        app.systems_page.select("system", ids["shop"])
        await shoot(app, out, "systems")
        w.show_page("instances")
        app.instances_page.table.view.sortByColumn(
            app.fleet.instances.column("cpu_percent"), Qt.SortOrder.DescendingOrder
        )
        app.instances_page.table.select_key(ids["web"])
        await shoot(app, out, "instances", 2.0)
        w.show_page("logs")
        app.logs_page.follow.setChecked(True)
        app.logs_page.show_instance(ids["web"])
        await until(lambda: "GET" in app.logs_page.text.toPlainText(), 30)
        await shoot(app, out, "logs", 1.5)
        w.show_page("alerts")
        await shoot(app, out, "alerts")
        w.show_page("audit")
        await app.audit_page.load()
        await shoot(app, out, "audit")
        w.show_page("backups")
        await shoot(app, out, "backups")
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
