"""The console end to end: a real embedded master and agent, offscreen Qt, the UI's own actions.

Upload a package, create a system and a module, deploy, start from the instances page and see
the state column turn `running` from the event stream; stop and start the whole system from
the systems page with its step progress; stop. An alert appears in the alerts view when a rule
fires (a state rule, the instance stopped), is acknowledged and silenced there. Live CPU/RSS
reach the instances table, the logs view tails and follows a real service, and a backup made in
the backups view is downloaded and restored.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import psutil
import pytest
from PySide6.QtCore import Qt

from console.app import ConsoleApp
from console.models.cells import KEY_ROLE
from console.ui import common
from tests.console.conftest import until
from tests.support import build_package, free_port, port_open

pytestmark = pytest.mark.slow


def state_cell(app: ConsoleApp, instance_id: str) -> str:
    """What the instances table shows in the State column, read through the view's proxy."""
    panel = app.instances_page.table
    col = app.fleet.instances.column("state")
    for r in range(panel.proxy.rowCount()):
        idx = panel.proxy.index(r, col)
        if idx.data(KEY_ROLE) == instance_id:
            return str(idx.data(Qt.ItemDataRole.DisplayRole))
    return ""


@pytest.fixture
def console(local_console, monkeypatch):
    monkeypatch.setattr(common, "confirm", lambda parent, title, text, then, **k: then())
    return local_console


async def test_upload_deploy_start_stop_through_the_ui(console, tmp_path):
    app = console
    assert await app.start_embedded(), app.embedded.tail() if app.embedded else "no master"
    assert app.embedded is not None and app.embedded.running
    assert (app.data_dir / "console-admin-password").stat().st_mode & 0o777 == 0o600
    assert app.window.nav.isVisible()
    await until(
        lambda: len(app.fleet.nodes) == 1 and app.fleet.nodes.row_at(0)["status"] == "online",
        timeout=60,
        what="the local agent online",
    )
    node_id = app.fleet.nodes.key_at(0)

    port = free_port()
    pkg = build_package(tmp_path / "pkgs", name="hello", manifest={"args": ["--port", str(port)]})
    progress: list[tuple[int, int]] = []
    app.uploads.progress.connect(lambda name, sent, total: progress.append((sent, total)))
    assert await app.packages_page.uploads.upload([str(pkg)]) == 1
    await until(lambda: len(app.fleet.packages) == 1, what="package row from the event")
    assert progress and progress[-1][0] == progress[-1][1] == pkg.stat().st_size
    assert app.packages_page.table.proxy.rowCount() == 1

    page = app.systems_page
    system_id = await page.create_system("shop", "made by the e2e test")
    assert system_id
    page.select("system", system_id)
    module_id = await page.create_module(
        {
            "name": "web",
            "package": "hello",
            "version": None,
            "start_order": 1,
            "env": {},
            "args": None,
        }
    )
    assert module_id
    page.select("module", module_id)
    assert page.deploy_action.isEnabled()
    [instance_id] = await page.deploy_to([node_id])
    await until(lambda: state_cell(app, instance_id) == "stopped", timeout=60, what="deployed")
    await until(lambda: app.fleet.systems.item_for("instance", instance_id), what="in the tree")

    events_before = app.session.events_received
    panel = app.instances_page.table
    panel.select_key(instance_id)
    assert panel.selected_keys() == [instance_id]
    app.instances_page.start_action.trigger()
    await until(lambda: state_cell(app, instance_id) == "running", timeout=60, what="running")
    assert app.session.events_received > events_before  # it came by push, not by a reload
    await until(lambda: port_open(port), what="the service's port")
    assert app.fleet.instances.row(instance_id)["pid"]

    # The whole system from the systems page: stop (confirmed), then start, with step progress.
    ops: list[tuple[str, int, int]] = []
    app.operations.changed.connect(lambda sid, state, done, total: ops.append((state, done, total)))
    page.select("system", system_id)
    await page.stop_system()
    assert app.operations.state == "succeeded", ops
    await until(
        lambda: state_cell(app, instance_id) == "stopped", what="stopped by the system stop"
    )
    assert ops[-1] == ("succeeded", 1, 1)
    assert app.operations.steps.row(instance_id)["state"] in ("stopped", "done")
    await page.start_system()
    await until(lambda: state_cell(app, instance_id) == "running", timeout=60, what="system start")
    assert ops[-1] == ("succeeded", 1, 1)

    panel.select_key(instance_id)
    app.instances_page.stop_action.trigger()
    await until(lambda: state_cell(app, instance_id) == "stopped", timeout=60, what="stopped")
    assert not port_open(port)
    item = app.fleet.systems.item_for("instance", instance_id)
    await until(lambda: item.index().siblingAtColumn(2).data() == "stopped", what="tree state")

    panel.select_key(instance_id)
    await app.instances_page.destroy_selected()
    await until(lambda: app.fleet.instances.row(instance_id) is None, timeout=60, what="destroyed")
    assert app.fleet.systems.item_for("instance", instance_id) is None

    # Adopt a process GDOS did not start, through the instances page's service.
    marker = f"adopt-me-{uuid.uuid4().hex[:8]}"
    twins = f"twins-{uuid.uuid4().hex[:8]}"
    sleeper = [sys.executable, "-c", "import time, sys; time.sleep(600)"]
    procs = [subprocess.Popen([*sleeper, marker])] + [
        subprocess.Popen([*sleeper, twins]) for _ in range(2)
    ]
    try:
        body = {
            "system_id": system_id,
            "node_id": node_id,
            "name": "legacy",
            "strategy": "cmdline",
            "cmdline_pattern": twins,
        }
        assert await app.fleet.adopt(body) is None  # two match: refused, and said which
        from console import message

        said = message.bridge().history[-1][1]
        assert "adopting a process failed" in said
        assert all(f"pid {p.pid}" in said for p in procs[1:])
        adopted = await app.fleet.adopt({**body, "cmdline_pattern": marker})
        assert adopted
        await until(lambda: state_cell(app, adopted) == "running", what="the adopted process")
        assert app.fleet.instances.row(adopted)["pid"] == procs[0].pid
        panel.select_key(adopted)
        await app.instances_page.destroy_selected()  # forgets it; the process keeps running
        await until(lambda: app.fleet.instances.row(adopted) is None, what="forgotten")
        assert procs[0].poll() is None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()

    # Quitting stops what the console started: the master and its local agent.
    master_pid = app.embedded.proc.pid
    agent_pids = [c.pid for c in psutil.Process(master_pid).children()]
    assert agent_pids
    await app.shutdown()
    assert app.embedded is None
    for pid in [master_pid, *agent_pids]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


CHATTY = """\
import itertools, sys, time
for n in itertools.count():
    print("tick", n, flush=True)
    if n % 5 == 0:
        print("warn", n, file=sys.stderr, flush=True)
    sum(i * i for i in range(20000))  # some CPU, so the live figures are not all zero
    time.sleep(0.2)
"""


def cell(app: ConsoleApp, instance_id: str, column: str) -> str:
    panel = app.instances_page.table
    col = app.fleet.instances.column(column)
    for r in range(panel.proxy.rowCount()):
        idx = panel.proxy.index(r, col)
        if idx.data(KEY_ROLE) == instance_id:
            return str(idx.data(Qt.ItemDataRole.DisplayRole))
    return ""


async def running_service(app: ConsoleApp, tmp_path, script: str = CHATTY) -> tuple[str, str]:
    """Start the embedded master, deploy one service and start it; (node id, instance id)."""
    assert await app.start_embedded(), app.embedded.tail() if app.embedded else "no master"
    await until(
        lambda: len(app.fleet.nodes) == 1 and app.fleet.nodes.row_at(0)["status"] == "online",
        timeout=60,
        what="the local agent online",
    )
    node_id = app.fleet.nodes.key_at(0)
    pkg = build_package(tmp_path / "pkgs", name="chatty", script=script)
    assert await app.uploads.upload([str(pkg)]) == 1
    system_id = await app.fleet.create_system("ops", "")
    assert system_id
    module = {"name": "chatty", "package": "chatty", "version": None, "start_order": 1}
    module_id = await app.fleet.create_module(system_id, {**module, "env": {}, "args": None})
    assert module_id
    made = await app.fleet.deploy(module_id, [node_id])
    assert made
    [instance_id] = made
    await until(lambda: state_cell(app, instance_id) == "stopped", timeout=60, what="deployed")
    await app.fleet.start_instances([instance_id])
    await until(lambda: state_cell(app, instance_id) == "running", timeout=60, what="running")
    return node_id, instance_id


async def test_an_alert_appears_when_a_rule_fires(console, tmp_path):
    app = console
    _, instance_id = await running_service(app, tmp_path)
    page = app.alerts_page
    # A rule through the alerts page's own action: this instance leaving `running`.
    rule_id = await app.alerts.save_rule(
        {
            "name": "chatty-down",
            "metric": "state",
            "op": "!=",
            "threshold": "running",
            "for_seconds": 0,
            "scope": {"instance_id": instance_id},
            "severity": "critical",
        }
    )
    assert rule_id
    await until(lambda: app.alerts.rules.row(rule_id), what="the rule in the rules table")
    assert app.alerts.rules.row(rule_id)["scope_text"] == "instance chatty-1"
    events_before = app.session.events_received
    fired: list[dict] = []
    app.alerts.fired.connect(fired.append)
    app.instances_page.table.select_key(instance_id)
    app.instances_page.stop_action.trigger()
    await until(
        lambda: any(
            r.get("state") == "firing" and r.get("rule_id") == rule_id
            for r in app.alerts.alerts.rows()
        ),
        timeout=30,
        what="a firing alert in the alerts table",
    )
    assert app.session.events_received > events_before  # pushed, not reloaded
    assert fired and fired[0]["target_id"] == instance_id
    [alert] = [r for r in app.alerts.alerts.rows() if r.get("rule_id") == rule_id]
    assert alert["severity"] == "critical" and alert["target_name"] == "chatty-1"
    panel = page.active
    assert panel.proxy.rowCount() >= 1
    app.window.show_page("overview")
    app.overview.refresh()
    assert app.overview.alert_card.value.text() == "1"
    # Acknowledge it from the page; the row says who.
    panel.select_key(alert["id"])
    assert page.ack_action.isEnabled()
    await page.ack()
    await until(lambda: app.alerts.alerts.row(alert["id"])["acked_by"] == "admin", what="acked")
    # Silence this rule on this instance for an hour; the silences tab lists it.
    panel.select_key(alert["id"])
    silence_id = await app.alerts.silence(
        {"matcher": {"rule_id": rule_id, "instance_id": instance_id}, "duration_seconds": 3600}
    )
    assert silence_id
    await until(lambda: app.alerts.silences.row(silence_id), what="the silence listed")
    assert app.alerts.silences.row(silence_id)["matcher_text"] == (
        "instance chatty-1, rule chatty-down"
    )
    # Started again: the alert resolves by itself (resolve_for_seconds is 5 s by default).
    await app.fleet.start_instances([instance_id])
    await until(
        lambda: app.alerts.alerts.row(alert["id"])["state"] == "resolved",
        timeout=30,
        what="the alert resolved",
    )


async def test_live_metrics_logs_and_a_backup_from_the_views(console, tmp_path):
    app = console
    _, instance_id = await running_service(app, tmp_path)
    # Live figures: the table follows `metrics:<id>` for the rows it shows.
    app.window.show_page("instances")
    await until(
        lambda: cell(app, instance_id, "cpu_percent") and cell(app, instance_id, "rss_bytes"),
        timeout=30,
        what="CPU and RSS of the running service in the table",
    )
    assert f"metrics:{instance_id}" in app.session.stream.keys
    assert cell(app, instance_id, "rss_bytes").endswith("MiB")
    # Its chart: history from the master, then live samples.
    app.instances_page.table.select_key(instance_id)
    await until(lambda: len(app.store.get(instance_id, "cpu_percent")) >= 2, what="a chart")
    assert app.instances_page.charts.cpu.redraw(force=True) >= 2

    # Logs: the view tails the service's stdout, then follows it live.
    logs = app.logs_page
    app.window.show_page("logs")
    logs.follow.setChecked(True)
    logs.show_instance(instance_id)
    await until(lambda: logs.file.count() >= 2, what="the instance's log files")
    assert [logs.file.itemData(i) for i in range(2)] == ["stdout", "stderr"]
    await until(lambda: "tick" in logs.text.toPlainText(), what="the tail of stdout")
    await until(lambda: app.logs.following, what="following")
    assert f"log:{instance_id}:stdout" in app.session.stream.keys
    shown = logs.text.toPlainText().count("tick")
    await until(
        lambda: logs.text.toPlainText().count("tick") >= shown + 5, what="new lines followed live"
    )
    lines = [ln for ln in logs.text.toPlainText().splitlines() if ln.startswith("tick")]
    numbers = [int(ln.split()[1]) for ln in lines]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # no gap, no repeat
    logs.file.setCurrentIndex(1)
    logs.file.activated.emit(1)
    await until(lambda: "warn" in logs.text.toPlainText(), what="stderr")

    # Backups: create one from the page, download it, then restore it.
    page = app.backups_page
    app.window.show_page("backups")
    backup_id = await page.backups.create()
    assert backup_id
    await until(lambda: app.backups.model.row(backup_id), what="the backup listed")
    assert app.backups.model.row(backup_id)["kind"] == "manual"
    page.table.select_key(backup_id)
    dest = tmp_path / "backup.db"
    await page.download_to(str(dest))
    assert dest.read_bytes()[:16] == b"SQLite format 3\x00"
    later = await app.fleet.create_system("made-after-the-backup", "")
    assert later
    await until(lambda: "made-after-the-backup" in app.fleet.system_names.values())
    page.table.select_key(backup_id)
    safety = await page.restore()  # confirmed by the test's `confirm`
    assert safety
    await until(
        lambda: app.fleet.systems.item_for("system", later) is None,
        timeout=60,
        what="the restored state shown (the later system gone)",
    )
    await until(lambda: app.backups.model.row(safety), what="the pre-restore backup listed")
    assert app.backups.model.row(safety)["kind"] == "pre-restore"
