"""Releases from the console by clicks and keys, against a real master and agent (offscreen):
per-instance settings in the instance's dialog, versions and drift on the Systems page, a canary
rollout 1.0.0 -> 1.0.1 followed live and resumed, the master's refusals in words, a rollback, a
cancelled rollout and the release history."""

from __future__ import annotations

from typing import Any

import pytest

from console import message
from console.app import ConsoleApp
from console.models.systems import VERSION
from console.ui.dialogs.instance_settings import InstanceSettingsDialog
from console.ui.dialogs.release_history import ReleaseHistoryDialog
from console.ui.dialogs.rollback import RollbackDialog
from console.ui.dialogs.rollout import RolloutDialog
from tests.console.clicks import accepted, answer, click_action, dialog, ok, press
from tests.console.conftest import until
from tests.e2e.release_support import answer as http_answer
from tests.e2e.release_support import package
from tests.support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def app(connected_console: ConsoleApp) -> ConsoleApp:
    return connected_console


def version_cell(app: ConsoleApp, kind: str, key: str) -> str:
    item = app.fleet.systems.item_for(kind, key)
    return str(item.index().siblingAtColumn(VERSION).data()) if item is not None else ""


def inst(app: ConsoleApp, instance_id: str) -> dict[str, Any]:
    return dict(app.fleet.instances.row(instance_id) or {})


async def test_roll_out_resume_roll_back_and_cancel_by_keys_and_clicks(
    qtbot, app, shared_api, node, tmp_path
):
    fleet = app.fleet
    events = tmp_path / "events"
    for version in ("1.0.0", "1.0.1"):
        await app.uploads.upload_one(package(tmp_path / "pkgs", version, events, name="relweb"))
    system_id = await fleet.create_system("rel-shop", "")
    module_id = await fleet.create_module(
        system_id,
        {"name": "web", "package": "relweb", "version": "1.0.0", "start_order": 1, "env": {}},
    )
    ids = await fleet.deploy(module_id, [node, node])
    await until(lambda: all(inst(app, i).get("state") == "stopped" for i in ids), 60, "deployed")

    # Each instance's own port, set in its dialog (F2 on the Instances page); a bad line and
    # an account name the master refuses are said next to their fields.
    page = app.instances_page
    app.window.show_page("instances")
    ports = {i: free_port() for i in ids}
    for n, instance_id in enumerate(ids):
        page.table.select_key(instance_id)
        if n == 0:
            await press(qtbot, page.table.view, "F2")
        else:
            await click_action(qtbot, page.table.toolbar, page.settings_action)
        form = await dialog(InstanceSettingsDialog)
        if n == 0:
            form.env.setPlainText("PORT")
            await ok(qtbot, form)
            assert form.field_problem("env") == "The line 'PORT' is not NAME=value"
            form.env.setPlainText(f"PORT={ports[instance_id]}")
            form.user.setText("-bad")
            await ok(qtbot, form)
            await until(lambda: form.field_problem("user"), what="the master's word on the user")  # noqa: B023
            assert form.isVisible() and "Run as" in form.field_problem("user")
            form.user.setText("")
        else:
            form.env.setPlainText(f"PORT={ports[instance_id]}")
        await ok(qtbot, form)
        await accepted(form)
    await until(
        lambda: all(
            inst(app, i).get("settings", {}).get("env") == {"PORT": str(ports[i])} for i in ids
        ),
        what="the settings back from the master",
    )

    await app.operations.start_system(system_id)
    await until(
        lambda: all(inst(app, i).get("health") == "healthy" for i in ids), 60, "started, healthy"
    )
    assert sorted(http_answer(p) or "" for p in ports.values()) == ["1.0.0 1", "1.0.0 2"]

    # The Systems page: the module's version, each instance's, drift marked after a change.
    systems = app.systems_page
    app.window.show_page("systems")
    await until(lambda: version_cell(app, "module", module_id) == "1.0.0", what="module version")
    await until(lambda: all(version_cell(app, "instance", i) == "1.0.0" for i in ids))
    shared_api.request("PATCH", f"/modules/{module_id}", json={"env": {"COLOR": "blue"}})
    await until(
        lambda: all(version_cell(app, "instance", i) == "1.0.0 (drift)" for i in ids),
        what="drift marked",
    )
    drift = fleet.instances.column("drift")
    await until(
        lambda: all(
            fleet.instances.index(fleet.instances.row_of(i), drift).data() == "drift" for i in ids
        ),
        what="drift in the instances table",
    )

    # Roll out (Ctrl+Shift+O): no version picked is said; 1.0.1 with a canary of one.
    systems.select("module", module_id)
    await press(qtbot, systems.tree, "Ctrl+Shift+O")
    roll = await dialog(RolloutDialog)
    await ok(qtbot, roll)
    assert roll.field_problem("version") == "Pick the version to roll out"
    roll.pick("1.0.1")
    roll.canary.setValue(1)
    await ok(qtbot, roll)
    await accepted(roll)
    op = await until(
        lambda: (
            app.operations.current
            if (app.operations.current or {}).get("kind") == "rollout"
            else None
        ),
        what="the rollout shown",
    )
    op_id = op["id"]
    await until(lambda: app.operations.can_resume(), 90, "the canary's pause")
    panel = systems.operation_panel
    assert "paused after the canary" in panel.label.text()
    assert "web 1.0.0 → 1.0.1" in panel.label.text()
    assert systems.resume_action.isEnabled() and systems.cancel_action.isEnabled()
    steps = app.operations.steps
    await until(
        lambda: sorted(str((steps.row(i) or {}).get("state")) for i in ids) == ["done", "prepared"],
        what="the canary done, the other prepared",
    )

    # A second rollout while this one runs: the master's 409, in words, in the dialog.
    systems.select("module", module_id)
    await click_action(qtbot, systems.toolbar, systems.rollout_action)
    again = await dialog(RolloutDialog)
    again.pick("1.0.0")
    await ok(qtbot, again)
    await until(lambda: again.problem.isVisible(), what="the refusal shown")
    assert again.problem.text() == (
        f"A rollout ({op_id}) is running on this system: wait for it to end, or cancel it "
        "(Cancel operation, below the systems)"
    )
    again.reject()
    # Nor does a start of the whole system go while it runs: said in a message, in words.
    systems.select("system", system_id)
    await press(qtbot, systems.tree, "Ctrl+Shift+S")
    said = await until(
        lambda: [t for _, t in message.bridge().history if t.startswith("starting the system")],
        what="the start refused",
    )
    assert said[-1] == (
        f"starting the system failed: a rollout ({op_id}) is running on this system: wait for "
        "it to end, or cancel it (Cancel operation, below the systems)"
    )

    # Resume (Ctrl+Shift+P): the rest goes, the versions change live.
    await press(qtbot, systems.tree, "Ctrl+Shift+P")
    await until(lambda: app.operations.state == "succeeded", 90, "the rollout done")
    await until(
        lambda: all(version_cell(app, "instance", i) == "1.0.1" for i in ids),
        what="1.0.1 shown, drift gone",
    )
    await until(lambda: version_cell(app, "module", module_id) == "1.0.1", what="module 1.0.1")
    assert sorted(http_answer(p) or "" for p in ports.values()) == ["1.0.1 1", "1.0.1 2"]
    assert not systems.resume_action.isEnabled() and not systems.cancel_action.isEnabled()

    # Roll back (Ctrl+Shift+B): the dialog is the confirmation; back to the previous release.
    systems.select("module", module_id)
    await press(qtbot, systems.tree, "Ctrl+Shift+B")
    back = await dialog(RollbackDialog)
    assert "now 1.0.1" in back.question.text() and back.ok_button.text() == "Roll back"
    await until(lambda: back.version.findData("1.0.0") >= 0, what="the kept version offered")
    assert back.version.currentData() is None  # the previous release, unless one is picked
    await ok(qtbot, back)
    await accepted(back)
    await until(
        lambda: (
            (app.operations.current or {}).get("kind") == "rollback"
            and app.operations.state == "succeeded"
        ),
        90,
        "the rollback done",
    )
    await until(lambda: all(version_cell(app, "instance", i) == "1.0.0" for i in ids))
    assert sorted(http_answer(p) or "" for p in ports.values()) == ["1.0.0 1", "1.0.0 2"]

    # A canary rollout cancelled from its button (confirmed) goes back to 1.0.0.
    systems.select("module", module_id)
    await click_action(qtbot, systems.toolbar, systems.rollout_action)
    roll = await dialog(RolloutDialog)
    roll.pick("1.0.1")
    roll.canary.setValue(1)
    await ok(qtbot, roll)
    await accepted(roll)
    await until(lambda: app.operations.can_resume(), 90, "paused again")
    await click_action(qtbot, panel.toolbar, systems.cancel_action)
    assert "goes back to the release it ran before" in await answer(qtbot, "Cancel operation")
    await until(lambda: app.operations.state == "failed", 90, "cancelled")
    assert "cancelled" in str((app.operations.current or {}).get("error"))
    await until(lambda: all(version_cell(app, "instance", i) == "1.0.0" for i in ids))

    # History (Ctrl+H) of the module, newest first, then of one instance.
    systems.select("module", module_id)
    await press(qtbot, systems.tree, "Ctrl+H")
    hist = await dialog(ReleaseHistoryDialog)
    await until(lambda: len(hist.model) == 3, what="three releases")
    kinds = [(r["kind"], r["from_version"], r["to_version"]) for r in hist.model.rows()]
    assert kinds[1:] == [("rollback", "1.0.1", "1.0.0"), ("rollout", "1.0.0", "1.0.1")]
    hist.reject()
    app.window.show_page("instances")
    page.table.select_key(ids[0])
    await click_action(qtbot, page.table.toolbar, page.history_action)
    mine = await dialog(ReleaseHistoryDialog)
    await until(lambda: len(mine.model) >= 2, what="the instance's releases")
    assert all(
        any(x["instance_id"] == ids[0] for x in r.get("instances", [])) for r in mine.model.rows()
    )
    mine.reject()


async def test_system_rollout_needs_a_version_picked(qtbot, app, tmp_path):
    fleet = app.fleet
    events = tmp_path / "events"
    await app.uploads.upload_one(package(tmp_path / "pkgs", "2.0.0", events, name="relsys"))
    system_id = await fleet.create_system("rel-sys", "")
    await fleet.create_module(
        system_id,
        {"name": "one", "package": "relsys", "version": None, "start_order": 1, "env": {}},
    )
    systems = app.systems_page
    app.window.show_page("systems")
    await until(lambda: fleet.systems.item_for("system", system_id), what="in the tree")
    systems.select("system", system_id)
    await press(qtbot, systems.tree, "Ctrl+Shift+O")
    roll = await dialog(RolloutDialog)
    assert roll.system and roll.version_boxes["one"].currentText().startswith("keep")
    await ok(qtbot, roll)
    assert roll.field_problem("versions") == "Pick a version for at least one module"
    roll.reject()
