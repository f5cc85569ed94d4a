"""An operator's day by clicks and keys only: start a local master and agent, upload a package,
make a system and a module, deploy, start, read the logs, add an alert rule, look at the audit
trail, take a backup. A real master, a real agent, a real service; offscreen Qt."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTabBar

from console.ui.dialogs import AlertRuleDialog, ModuleDialog, NodePicker, SystemDialog
from tests.console.clicks import (
    accepted,
    choose_file,
    click,
    click_row,
    dialog,
    in_qt,
    ok,
    press,
    type_in,
)
from tests.console.conftest import until
from tests.support import build_package, free_port

pytestmark = pytest.mark.slow

CHATTY = """\
import sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
n = 0
while True:
    print("request", n, "served on", port, flush=True)
    n += 1
    time.sleep(0.3)
"""


@pytest.fixture
def app(local_console):
    return local_console


async def test_the_operator_loop_by_clicks_and_keys(qtbot, app, tmp_path):
    w = app.window
    # Start a local master and agent from the start page.
    await click(qtbot, w.start_page.embedded_button)
    await until(lambda: w.nav.isVisible(), timeout=90, what="connected to the local master")
    await until(
        lambda: [r for r in app.fleet.nodes.rows() if r.get("status") == "online"],
        timeout=60,
        what="the local agent online",
    )
    # Upload (Ctrl+3, Ctrl+U, type the path, Enter).
    port = free_port()
    pkg = build_package(
        tmp_path, name="shopweb", script=CHATTY, manifest={"args": ["--port", str(port)]}
    )
    await press(qtbot, w.nav, "Ctrl+3")
    assert w.current_page() == "packages"
    await press(qtbot, app.packages_page.table.filter, "Ctrl+U")
    await choose_file(qtbot, pkg)
    await until(lambda: len(app.fleet.packages) == 1, what="the package listed")

    # A system (Ctrl+4, Ctrl+N), a module in it (Ctrl+M), deployed (Ctrl+D).
    systems = app.systems_page
    await press(qtbot, w.nav, "Ctrl+4")
    await press(qtbot, systems.tree, "Ctrl+N")
    form = await dialog(SystemDialog)
    await type_in(qtbot, form.name, "shop")
    await ok(qtbot, form)
    await accepted(form)
    await until(lambda: systems.selected()[0] == "system", what="the new system selected")
    await press(qtbot, systems.tree, "Ctrl+M")
    mform = await dialog(ModuleDialog)
    assert mform.package.currentText() == "shopweb"
    await type_in(qtbot, mform.name, "web")
    await ok(qtbot, mform)
    await accepted(mform)
    await until(lambda: systems.selected()[0] == "module", what="the new module selected")
    await press(qtbot, systems.tree, "Ctrl+D")
    picker = await dialog(NodePicker)  # the only node is ticked already
    await ok(qtbot, picker)
    await accepted(picker)
    instance_id = await until(
        lambda: next(iter(app.fleet.instances.key_list()), None), what="the instance listed"
    )
    await until(
        lambda: app.fleet.instances.row(instance_id)["state"] == "stopped",
        timeout=60,
        what="deployed",
    )

    # Start it from the instances page (Ctrl+5, click its row, Ctrl+R).
    instances = app.instances_page
    await press(qtbot, w.nav, "Ctrl+5")
    await click_row(qtbot, instances.table, instance_id)
    await press(qtbot, instances.table.view, "Ctrl+R")
    await until(
        lambda: app.fleet.instances.row(instance_id)["state"] == "running",
        timeout=60,
        what="running",
    )
    await until(lambda: not instances.start_action.isEnabled(), what="Start greyed out")

    # Its logs (Ctrl+Shift+L), followed live (click Follow).
    await press(qtbot, instances.table.view, "Ctrl+Shift+L")
    logs = app.logs_page
    await until(lambda: "served on" in logs.text.toPlainText(), what="the service's stdout")
    await click(qtbot, logs.follow)
    seen = logs.text.toPlainText().count("served on")
    await until(lambda: logs.text.toPlainText().count("served on") > seen + 2, what="followed")

    # An alert rule (Ctrl+7, the Rules tab, Ctrl+N): CPU over 90 % for 30 s, its defaults.
    alerts = app.alerts_page
    await press(qtbot, w.nav, "Ctrl+7")
    bar = alerts.tabs.findChild(QTabBar)
    assert bar is not None
    await in_qt(
        qtbot.mouseClick,
        bar,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        bar.tabRect(1).center(),
    )
    assert alerts.tabs.currentWidget() is alerts.rules
    await press(qtbot, alerts.rules.filter, "Ctrl+N")
    rform = await dialog(AlertRuleDialog)
    await type_in(qtbot, rform.name, "web busy")
    await ok(qtbot, rform)
    await accepted(rform)
    await until(
        lambda: any(r["name"] == "web busy" for r in app.alerts.rules.rows()), what="the rule"
    )

    # The audit trail (Ctrl+8, Apply) has all of it, and what follows arrives by itself.
    audit = app.audit_page
    await press(qtbot, w.nav, "Ctrl+8")
    await click(qtbot, audit.apply_button)
    wanted = {"create_system", "create_module", "create_instance", "create_rule"}
    await until(
        lambda: wanted <= {r["action"] for r in app.audit.model.rows()}, what="the audit rows"
    )

    # A backup (Ctrl+9, Ctrl+B); its row appears, and so does its audit row.
    backups = app.backups_page
    await press(qtbot, w.nav, "Ctrl+9")
    await press(qtbot, backups.table.filter, "Ctrl+B")
    await until(lambda: len(app.backups.model) >= 1, what="the backup listed")
    await until(
        lambda: "create_backup" in {r["action"] for r in app.audit.model.rows()},
        what="the backup's audit row, pushed",
    )
    # Overview (Ctrl+1): one node online, one instance running, one package version.
    await press(qtbot, w.nav, "Ctrl+1")
    app.overview.refresh()
    assert app.overview.node_card.value.text() == "1 / 1"
    assert app.overview.instance_card.value.text() == "1 running"
    assert app.overview.package_card.detail.text() == "1 version"
