"""Every page by clicks and shortcuts, against a real master and agent (offscreen Qt).

Each toolbar button is clicked and each shortcut pressed through Qt's own key dispatch, also
with the focus in the page's filter box; the dialog that opens is filled and accepted, the
master does the work, and the result shows up live (no F5). The direct-call tests elsewhere
test the logic; these test the wiring a person uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from console import message
from console.app import ConsoleApp
from console.ui.dialogs import (
    AdoptDialog,
    AlertRuleDialog,
    LabelsDialog,
    LoginDialog,
    ModuleDialog,
    NodePicker,
    SilenceDialog,
    SystemDialog,
    UserDialog,
)
from tests.console.clicks import (
    accepted,
    answer,
    choose_file,
    click,
    click_action,
    dialog,
    in_qt,
    no_dialogs,
    ok,
    press,
    type_in,
)
from tests.console.conftest import until
from tests.support import build_package

pytestmark = pytest.mark.slow


@pytest.fixture
def app(connected_console: ConsoleApp) -> ConsoleApp:
    return connected_console


def shown(app: ConsoleApp, page: str) -> None:
    app.window.show_page(page)
    assert app.window.current_page() == page


async def test_packages_upload_and_delete_by_keys_and_clicks(qtbot, app, tmp_path):
    page = app.packages_page
    shown(app, "packages")
    app.settings.setValue("uploads/folder", str(tmp_path))
    good = build_package(tmp_path, name="clicked", version="1.0.0")
    # Ctrl+U with the focus in the filter box: the box does not take it ("clear line").
    await press(qtbot, page.table.filter, "Ctrl+U")
    files = await dialog(QFileDialog, "the upload dialog")
    assert Path(files.directory().absolutePath()) == tmp_path  # the last folder used
    await choose_file(qtbot, good)
    await until(lambda: page.table.proxy.rowCount() >= 1, what="the package listed")
    assert any(r["name"] == "clicked" for r in app.fleet.packages.rows())
    # The package's event may come before the upload's own answer: the bar goes with the answer.
    await until(lambda: "uploaded as" in page.status.text(), what="the upload's answer")
    assert not page.bar.isVisible()
    # A refused upload says so, and its bar shows it (not a full bar).
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip at all")
    await click_action(qtbot, page.table.toolbar, page.upload_action)
    await choose_file(qtbot, bad)
    await until(lambda: "refused" in page.status.text(), what="the refusal said")
    assert page.bar.isVisible() and page.bar.property("failed") is True
    assert page.bar.value() == 0 and "refused" in page.bar.format()
    # Delete, from the key and confirmed in the box.
    page.table.select_key(
        next(r["id"] for r in app.fleet.packages.rows() if r["name"] == "clicked")
    )
    await press(qtbot, page.table.view, "Del")
    assert "Delete clicked 1.0.0?" in await answer(qtbot, "Delete package")
    await until(
        lambda: not any(r["name"] == "clicked" for r in app.fleet.packages.rows()),
        what="the package gone",
    )


async def test_systems_page_by_keys_and_clicks(qtbot, app, tmp_path, node):
    page = app.systems_page
    shown(app, "systems")
    await app.uploads.upload([str(build_package(tmp_path, name="sysweb"))])
    # New system from the key: a name the master refuses is explained next to the field,
    # and the dialog keeps what was typed until the master accepts it.
    await press(qtbot, page.tree, "Ctrl+N")
    form = await dialog(SystemDialog)
    await type_in(qtbot, form.name, "my shop")
    await ok(qtbot, form)
    await until(lambda: form.field_problem("name"), what="the problem shown")
    assert form.field_problem("name") == (
        "Name may contain only letters, digits, '.', '-' and '_' (no spaces), "
        "starting with a letter or digit"
    )
    assert form.isVisible() and form.name.text() == "my shop"
    form.name.setText("click-shop")
    await ok(qtbot, form)
    await accepted(form)
    system_id = await until(
        lambda: next((k for k, v in app.fleet.system_names.items() if v == "click-shop"), None),
        what="the system listed",
    )
    await until(lambda: app.fleet.systems.item_for("system", system_id), what="in the tree")
    # The same from the toolbar button: a taken name, next to the field.
    await click_action(qtbot, page.toolbar, page.new_action)
    form = await dialog(SystemDialog)
    form.name.setText("click-shop")
    await ok(qtbot, form)
    await until(lambda: form.field_problem("name"), what="the conflict shown")
    assert "click-shop" in form.field_problem("name")
    form.reject()

    # Add a module (Ctrl+M) to the selected system.
    page.select("system", system_id)
    await press(qtbot, page.tree, "Ctrl+M")
    mform = await dialog(ModuleDialog)
    mform.name.setText("web")
    mform.package.setCurrentText("sysweb")
    await ok(qtbot, mform)
    await accepted(mform)
    module_id = await until(
        lambda: next((k for k, v in app.fleet.module_names.items() if v == "web"), None)
    )
    await until(lambda: app.fleet.systems.item_for("module", module_id), what="module in tree")
    # Edit it (F2): the start order changes.
    page.select("module", module_id)
    await press(qtbot, page.tree, "F2")
    mform = await dialog(ModuleDialog)
    mform.order.setValue(4)
    await ok(qtbot, mform)
    await accepted(mform)
    await until(
        lambda: (
            "order 4"
            in app.fleet.systems.item_for("module", module_id).index().siblingAtColumn(1).data()
        ),
        what="the new start order shown",
    )
    # Deploy (Ctrl+D) to the node, ticked in the picker.
    page.select("module", module_id)
    await press(qtbot, page.tree, "Ctrl+D")
    picker = await dialog(NodePicker)
    picker.list.item(0).setCheckState(Qt.CheckState.Checked)
    await ok(qtbot, picker)
    await accepted(picker)
    instance_id = await until(
        lambda: next(
            (r["id"] for r in app.fleet.instances.rows() if r.get("module_id") == module_id),
            None,
        ),
        what="the instance listed",
    )
    await until(lambda: app.fleet.systems.item_for("instance", instance_id), what="in the tree")
    await until(
        lambda: (app.fleet.instances.row(instance_id) or {}).get("state") == "stopped",
        timeout=60,
        what="deployed",
    )
    # Start and stop the whole system from the keys (the stop is confirmed).
    page.select("system", system_id)
    await press(qtbot, page.tree, "Ctrl+Shift+S")
    await until(
        lambda: (app.fleet.instances.row(instance_id) or {}).get("state") == "running",
        timeout=60,
        what="started by the system start",
    )
    page.select("system", system_id)
    await click_action(qtbot, page.toolbar, page.stop_action)
    assert "reverse start order" in await answer(qtbot, "Stop system")
    await until(
        lambda: (app.fleet.instances.row(instance_id) or {}).get("state") == "stopped",
        timeout=60,
        what="stopped by the system stop",
    )
    # Destroy the instance (Del on it), then the module and the system.
    page.select("instance", instance_id)
    await press(qtbot, page.tree, "Del")
    await answer(qtbot, "Destroy instance")
    await until(lambda: app.fleet.instances.row(instance_id) is None, timeout=60, what="gone")
    await until(lambda: app.fleet.systems.item_for("instance", instance_id) is None)
    page.select("module", module_id)
    await click_action(qtbot, page.toolbar, page.delete_action)
    await answer(qtbot, "Delete module")
    await until(lambda: app.fleet.systems.item_for("module", module_id) is None, what="no module")
    page.select("system", system_id)
    await press(qtbot, page.tree, "Del")
    await answer(qtbot, "Delete system")
    await until(lambda: app.fleet.systems.item_for("system", system_id) is None, what="no system")
    assert no_dialogs()


async def test_nodes_labels_and_remove_by_keys(qtbot, app, node):
    page = app.nodes_page
    shown(app, "nodes")
    page.table.select_key(node)
    assert page.labels_action.isEnabled()
    await press(qtbot, page.table.filter, "Ctrl+L")
    form = await dialog(LabelsDialog)
    form.labels.setText("zone")
    await ok(qtbot, form)
    assert form.field_problem("labels") == "'zone' is not key=value"
    form.labels.setText("zone=eu-1, rack=7")
    await ok(qtbot, form)
    await accepted(form)
    await until(lambda: page.labels_value.text() == "rack=7, zone=eu-1", what="labels shown")
    # Remove asks first; cancelled here (the module's other tests need the node).
    page.table.select_key(node)
    await click_action(qtbot, page.table.toolbar, page.remove_action)
    assert "revoke its credential" in await answer(qtbot, "Cancel")
    assert app.fleet.nodes.row(node) is not None


async def test_users_page_by_keys(qtbot, app):
    page = app.users_page
    await press(qtbot, app.window.nav, "Ctrl+0")
    assert app.window.current_page() == "users"
    await until(lambda: app.users.model.row("admin"), what="the users listed")
    await press(qtbot, page.table.filter, "Ctrl+N")
    form = await dialog(UserDialog)
    form.username.setText("bad name")
    form.password.setText("short")
    await ok(qtbot, form)
    assert form.field_problem("password") == "The password needs at least 8 characters"
    form.password.setText("long-enough-pw")
    await ok(qtbot, form)
    await until(lambda: form.field_problem("username"), what="the master's word on the name")
    assert "may contain only letters" in form.field_problem("username")
    form.username.setText("clicker")
    await ok(qtbot, form)
    await accepted(form)
    await until(lambda: app.users.model.row("clicker"), what="the user listed")
    page.table.select_key("clicker")
    await press(qtbot, page.table.view, "Del")
    await answer(qtbot, "Delete user")
    await until(lambda: app.users.model.row("clicker") is None, what="the user gone")


async def test_backups_and_audit_by_keys_and_clicks(qtbot, app, tmp_path):
    page = app.backups_page
    shown(app, "backups")
    before = set(app.backups.model.key_list())
    await press(qtbot, page.table.filter, "Ctrl+B")
    backup_id = await until(
        lambda: next(iter(set(app.backups.model.key_list()) - before), None), what="a backup"
    )
    page.table.select_key(backup_id)
    app.settings.setValue("dialogs/save", str(tmp_path))
    await press(qtbot, page.table.view, "Ctrl+S")
    save = await dialog(QFileDialog, "the save dialog")
    assert Path(save.directory().absolutePath()) == tmp_path
    await choose_file(qtbot, tmp_path / "copy.db")
    await until(lambda: (tmp_path / "copy.db").is_file(), what="the backup saved")
    assert (tmp_path / "copy.db").read_bytes()[:16] == b"SQLite format 3\x00"
    page.table.select_key(backup_id)
    await click_action(qtbot, page.table.toolbar, page.restore_action)
    assert "goes back to that moment" in await answer(qtbot, "Cancel")
    resets: list[int] = []
    app.backups.model.modelReset.connect(lambda: resets.append(1))
    await click_action(qtbot, page.table.toolbar, page.refresh_action)
    await until(lambda: resets, what="the list loaded again")
    page.table.select_key(backup_id)
    await press(qtbot, page.table.view, "Del")
    await answer(qtbot, "Delete backup")
    await until(lambda: app.backups.model.row(backup_id) is None, what="the backup gone")

    # The audit page: Apply loads; what happens next arrives by itself.
    audit = app.audit_page
    shown(app, "audit")
    await click(qtbot, audit.apply_button)
    await until(lambda: len(app.audit.model) > 0, what="the audit rows")
    # The delete's record is in the loaded rows, or arrives live just after them.
    await until(
        lambda: any(r["action"] == "delete_backup" for r in app.audit.model.rows()),
        what="the backup's delete in the audit trail",
    )
    app.fleet.create_system("audited-live", "")
    await until(
        lambda: any(
            r["action"] == "create_system" and r["result"] == "ok" for r in app.audit.model.rows()
        ),
        what="the new audit row, pushed",
    )
    await click(qtbot, audit.export_button)
    await choose_file(qtbot, tmp_path / "audit.csv", "the export dialog")
    await until(lambda: (tmp_path / "audit.csv").is_file(), what="the export written")
    assert "create_system" in (tmp_path / "audit.csv").read_text()


def stderr_written(work_dir: Path, instance_id: str) -> bool:
    """Whether the service has written to its stderr (on the agent's disk)."""
    path = work_dir / instance_id / "logs" / "stderr.log"
    return path.is_file() and path.stat().st_size > 0


async def test_instances_logs_and_alerts_by_keys_and_clicks(qtbot, app, tmp_path, node, node_dir):
    fleet = app.fleet
    script = (
        "import sys, time\nprint('only stderr', file=sys.stderr, flush=True)\ntime.sleep(600)\n"
    )
    await app.uploads.upload([str(build_package(tmp_path, name="quiet", script=script))])
    system_id = await fleet.create_system("click-ops", "")
    module_id = await fleet.create_module(
        system_id,
        {"name": "quiet", "package": "quiet", "version": None, "start_order": 1, "env": {}},
    )
    [instance_id] = await fleet.deploy(module_id, [node])
    await until(lambda: (fleet.instances.row(instance_id) or {}).get("state") == "stopped", 60)
    # The health column says there is no check rather than nothing.
    col = fleet.instances.column("health")
    row = fleet.instances.row_of(instance_id)
    await until(lambda: fleet.instances.index(fleet.instances.row_of(instance_id), col).data())
    assert fleet.instances.index(row, col).data() == "no check"

    page = app.instances_page
    shown(app, "instances")
    page.table.select_key(instance_id)
    assert page.start_action.isEnabled() and not page.stop_action.isEnabled()
    await press(qtbot, page.table.filter, "Ctrl+R")
    await until(lambda: fleet.instances.row(instance_id)["state"] == "running", 60, what="run")
    await until(lambda: not page.start_action.isEnabled(), what="Start disabled when running")
    assert page.stop_action.isEnabled() and page.restart_action.isEnabled()

    # Logs (Ctrl+Shift+L): only stderr has something, so stderr is what opens.
    await until(lambda: stderr_written(node_dir, instance_id), what="the service's stderr line")
    await press(qtbot, page.table.view, "Ctrl+Shift+L")
    assert app.window.current_page() == "logs"
    logs = app.logs_page
    await until(lambda: "only stderr" in logs.text.toPlainText(), what="stderr shown")
    assert logs.file.currentData() == "stderr"
    assert logs.file.currentText().startswith("stderr (")
    await click(qtbot, logs.follow)
    await until(lambda: app.logs.following, what="following")
    await click(qtbot, logs.reload_button)
    await press(qtbot, logs.text, "Ctrl+F")
    assert logs.search.hasFocus()

    # Alerts: a rule from Ctrl+N on the Rules tab; it fires once the instance stops.
    alerts = app.alerts_page
    shown(app, "alerts")
    alerts.tabs.setCurrentWidget(alerts.rules)
    await press(qtbot, alerts.rules.filter, "Ctrl+N")
    form = await dialog(AlertRuleDialog)
    form.name.setText("quiet-down")
    form.metric_box.setCurrentIndex(form.metric_box.findData("state"))
    form.op.setCurrentText("!=")
    form.threshold.setText("running")
    form.for_seconds.setValue(0)
    form.scope_kind.setCurrentIndex(form.scope_kind.findData("instance"))
    form.scope_target.setCurrentIndex(form.scope_target.findData(instance_id))
    await ok(qtbot, form)
    await accepted(form)
    rule_id = await until(
        lambda: next((r["id"] for r in app.alerts.rules.rows() if r["name"] == "quiet-down"), None),
        what="the rule listed",
    )
    alerts.rules.select_key(rule_id)
    await press(qtbot, alerts.rules.view, "F2")
    form = await dialog(AlertRuleDialog)
    form.severity.setCurrentText("critical")
    await ok(qtbot, form)
    await accepted(form)
    await until(lambda: app.alerts.rules.row(rule_id)["severity"] == "critical", what="edited")

    shown(app, "instances")
    page.table.select_key(instance_id)
    await click_action(qtbot, page.table.toolbar, page.stop_action)
    await until(lambda: fleet.instances.row(instance_id)["state"] == "stopped", 60, what="stop")
    alert_id = await until(
        lambda: next(
            (
                a["id"]
                for a in app.alerts.alerts.rows()
                if a.get("rule_id") == rule_id and a.get("state") == "firing"
            ),
            None,
        ),
        timeout=30,
        what="the alert firing",
    )
    shown(app, "alerts")
    alerts.tabs.setCurrentWidget(alerts.active)
    alerts.active.select_key(alert_id)
    await press(qtbot, alerts.active.filter, "Ctrl+K")
    await until(lambda: app.alerts.alerts.row(alert_id).get("acked_by") == "admin", what="ack")
    alerts.active.select_key(alert_id)
    assert alerts.silence_action.isEnabled()
    await press(qtbot, alerts.active.view, "Ctrl+Shift+M")
    silence = await dialog(SilenceDialog)
    silence.comment.setText("by keys")
    await ok(qtbot, silence)
    await accepted(silence)
    silence_id = await until(
        lambda: next(
            (s["id"] for s in app.alerts.silences.rows() if s.get("comment") == "by keys"), None
        ),
        what="the silence listed",
    )
    alerts.tabs.setCurrentWidget(alerts.silences)
    alerts.silences.select_key(silence_id)
    await press(qtbot, alerts.silences.view, "Del")
    await answer(qtbot, "End silence")
    await until(lambda: app.alerts.silences.row(silence_id) is None, what="silence ended")
    alerts.tabs.setCurrentWidget(alerts.rules)
    alerts.rules.select_key(rule_id)
    await press(qtbot, alerts.rules.view, "Ctrl+Shift+E")
    await until(lambda: app.alerts.rules.row(rule_id)["enabled"] is False, what="disabled")
    alerts.rules.select_key(rule_id)
    await click_action(qtbot, alerts.rules.toolbar, alerts.delete_rule_action)
    await answer(qtbot, "Delete rule")
    await until(lambda: app.alerts.rules.row(rule_id) is None, what="rule gone")

    # Restart, then destroy from the instances page.
    shown(app, "instances")
    page.table.select_key(instance_id)
    assert page.restart_action.isEnabled()
    await press(qtbot, page.table.view, "Ctrl+Shift+R")
    await until(
        lambda: fleet.instances.row(instance_id)["state"] == "running",
        60,
        what=f"running again ({fleet.instances.row(instance_id)}, {message.bridge().history})",
    )
    page.table.select_key(instance_id)
    await press(qtbot, page.table.view, "Ctrl+T")
    await until(lambda: fleet.instances.row(instance_id)["state"] == "stopped", 60, what="stop")
    await click_action(qtbot, page.table.toolbar, page.adopt_action)
    adopt = await dialog(AdoptDialog)
    assert adopt.system.findData(system_id) >= 0
    adopt.reject()
    page.table.select_key(instance_id)
    await press(qtbot, page.table.view, "Del")
    await answer(qtbot, "Destroy")
    await until(lambda: fleet.instances.row(instance_id) is None, 60, what="destroyed")


async def test_window_keys_reach_their_pages_from_any_focus(qtbot, app):
    """Ctrl+1 … Ctrl+9 and Ctrl+0, pressed in a filter box, in a table, in the page list (the
    first ten pages have one; Masters, the eleventh, is reached from the page list)."""
    names = list(app.window.pages)[:10]
    for n, name in enumerate(names):
        focus = [app.window.nav, app.packages_page.table.filter, app.instances_page.table.view][
            n % 3
        ]
        if not focus.isVisible():
            focus = app.window.nav
        await press(qtbot, focus, f"Ctrl+{(n + 1) % 10}")
        assert app.window.current_page() == name
    loads = []
    app.fleet.loaded.connect(lambda: loads.append(1))
    await press(qtbot, app.window.nav, "F5")
    await until(lambda: loads, what="a reload from F5")
    await press(qtbot, app.window.nav, "Ctrl+O")
    login = await dialog(LoginDialog)
    login.reject()


async def test_masters_page_from_the_page_list_and_its_refresh_button(qtbot, app):
    nav = app.window.nav
    names = [nav.item(i).data(Qt.ItemDataRole.UserRole) for i in range(nav.count())]
    where = nav.visualItemRect(nav.item(names.index("masters"))).center()
    await in_qt(
        qtbot.mouseClick, nav.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier(0), where
    )
    assert app.window.current_page() == "masters"
    page = app.masters_page
    await until(lambda: page.table.model.rowCount() == 1, what="this master listed")
    page.table.model.set_rows([])
    await click_action(qtbot, page.table.toolbar, page.refresh_action)
    await until(lambda: page.table.model.rowCount() == 1, what="listed again by Refresh")
    assert page.table.model.rows()[0]["current"]


async def test_changes_made_elsewhere_show_up_without_f5(app, shared_api, tmp_path):
    """Another operator (here the REST API) adds a module and a rule: pushed, not pulled."""
    await app.uploads.upload([str(build_package(tmp_path, name="elsewhere"))])
    system = shared_api.post("/systems", {"name": "made-elsewhere"})
    await until(lambda: app.fleet.systems.item_for("system", system["id"]), what="the system")
    module = shared_api.post(
        f"/systems/{system['id']}/modules", {"name": "api", "package": "elsewhere", "env": {}}
    )
    await until(lambda: app.fleet.systems.item_for("module", module["id"]), what="the module")
    shared_api.request("DELETE", f"/modules/{module['id']}", expect=204)
    await until(lambda: app.fleet.systems.item_for("module", module["id"]) is None, what="gone")
    rule = shared_api.post(
        "/alert-rules",
        {"name": "elsewhere-cpu", "metric": "cpu_percent", "op": ">", "threshold": 95},
    )
    await until(lambda: app.alerts.rules.row(rule["id"]), what="the rule listed")
    shared_api.request("PATCH", f"/alert-rules/{rule['id']}", expect=200, json={"threshold": 80})
    await until(lambda: app.alerts.rules.row(rule["id"])["threshold"] == 80, what="changed")
    shared_api.request("DELETE", f"/alert-rules/{rule['id']}", expect=204)
    await until(lambda: app.alerts.rules.row(rule["id"]) is None, what="the rule gone")
