"""The release dialogs and what they send, the operation line, an instance's history and the
version column with drift: no master needed (real widgets offscreen)."""

from __future__ import annotations

import pytest

from console.client import ClientError
from console.errors import in_the_way
from console.models.systems import VERSION, SystemTreeModel
from console.models.tables import InstanceTableModel, OperationStepModel
from console.services.releases import instance_history
from console.ui.dialogs import FieldError
from console.ui.dialogs.instance_settings import InstanceSettingsDialog
from console.ui.dialogs.rollback import RollbackDialog
from console.ui.dialogs.rollout import ModuleChoice, RolloutDialog, batch_size
from console.ui.operation_panel import describe
from tests.console.conftest import _app

WEB = ModuleChoice("web", "svc", "1.0.0", ["1.0.2", "1.0.1", "1.0.0"])


@pytest.fixture(autouse=True)
def qapp():
    return _app()


@pytest.mark.parametrize(
    ("text", "size"), [("1", 1), (" 12 ", 12), ("25%", "25%"), ("100%", "100%")]
)
def test_batch_size_takes_a_count_or_a_share(text, size):
    assert batch_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "0%", "101%", "all", ""])
def test_batch_size_refuses_other_text_in_words(text):
    with pytest.raises(FieldError) as err:
        batch_size(text)
    assert err.value.field == "batch_size"
    assert str(err.value) == "batch size is a number of instances (2) or a share of them (25%)"


def test_rollout_dialog_lists_versions_newest_first_and_needs_one_picked():
    dlg = RolloutDialog("Roll out web", [WEB])
    box = dlg.version
    assert [box.itemText(i) for i in range(box.count())] == [
        "1.0.2  (newest)",
        "1.0.1",
        "1.0.0  (current)",
    ]
    assert box.currentIndex() == -1  # nothing picked for the user
    with pytest.raises(FieldError) as err:
        dlg.values()
    assert (err.value.field, str(err.value)) == ("version", "pick the version to roll out")
    dlg.pick("1.0.1")
    dlg.batch.setText("50%")
    dlg.canary.setValue(1)
    dlg.auto_rollback.setChecked(False)
    assert dlg.values() == {
        "version": "1.0.1",
        "batch_size": "50%",
        "canary": 1,
        "auto_rollback": False,
    }
    assert dlg.ok_button.text() == "Roll out"
    dlg.deleteLater()


def test_system_rollout_sends_only_the_modules_given_a_version():
    api = ModuleChoice("api", "api", "", ["2.1.0", "2.0.0"])
    dlg = RolloutDialog("Roll out shop", [WEB, api], system=True)
    assert dlg.version_boxes["web"].currentText() == "keep 1.0.0"
    assert dlg.version_boxes["api"].currentText() == "keep as it is"
    with pytest.raises(FieldError) as err:
        dlg.values()
    assert err.value.field == "versions"
    dlg.pick("2.1.0", "api")
    assert dlg.values() == {
        "versions": {"api": "2.1.0"},
        "batch_size": 1,
        "canary": 0,
        "auto_rollback": True,
    }
    dlg.deleteLater()


def test_rollback_dialog_defaults_to_the_previous_release():
    dlg = RollbackDialog("web", "1.0.1")
    assert dlg.values() == {"version": None}
    dlg.add_versions(["1.0.1", "1.0.0", "0.9.0", "1.0.0"])
    box = dlg.version
    assert [box.itemText(i) for i in range(box.count())] == [
        "the previous release",
        "1.0.0",
        "0.9.0",
    ]
    box.setCurrentIndex(2)
    assert dlg.values() == {"version": "0.9.0"}
    assert "now 1.0.1" in dlg.question.text()
    dlg.deleteLater()


def test_instance_settings_dialog_sends_env_args_and_user():
    row = {
        "id": "i1",
        "name": "web-1",
        "version": "1.0.0",
        "node_name": "host-a",
        "index": 1,
        "settings": {"env": {"PORT": "8001"}, "args": None, "user": None},
    }
    dlg = InstanceSettingsDialog(row, {"id": "m", "env": {"A": "1"}, "args": ["--x"]})
    assert dlg.env.toPlainText() == "PORT=8001"
    assert "--x" in dlg.args.placeholderText()
    assert "GDOS_INSTANCE_INDEX 1" in dlg.facts.text()
    assert dlg.values() == {"env": {"PORT": "8001"}, "args": None, "user": None}
    dlg.args.setText("--port '${PORT}' -v")
    dlg.user.setText("svc")
    assert dlg.values() == {
        "env": {"PORT": "8001"},
        "args": ["--port", "${PORT}", "-v"],
        "user": "svc",
    }
    dlg.env.setPlainText("PORT")
    with pytest.raises(FieldError) as err:
        dlg.values()
    assert err.value.field == "env"
    dlg.args.setText("'unclosed")
    dlg.env.setPlainText("")
    with pytest.raises(FieldError) as err:
        dlg.values()
    assert err.value.field == "args"
    dlg.deleteLater()


def test_instance_history_lifts_its_own_entry():
    releases = [
        {
            "operation_id": "op2",
            "kind": "rollback",
            "from_version": "1.0.1",
            "to_version": "1.0.0",
            "state": "succeeded",
            "instances": [{"instance_id": "a", "from": "1.0.1", "to": "1.0.0", "state": "done"}],
        },
        {
            "operation_id": "op1",
            "kind": "rollout",
            "from_version": "1.0.0",
            "to_version": "1.0.1",
            "state": "failed",
            "instances": [
                {"instance_id": "a", "from": "1.0.0", "to": "1.0.1", "state": "rolled_back"},
                {
                    "instance_id": "b",
                    "from": "1.0.0",
                    "to": "1.0.1",
                    "state": "failed",
                    "error": "exited",
                },
            ],
        },
    ]
    mine = instance_history(releases, "b")
    assert [(r["operation_id"], r["state"], r["error"]) for r in mine] == [
        ("op1", "failed", "exited")
    ]
    assert [r["operation_id"] for r in instance_history(releases, "a")] == ["op2", "op1"]
    assert instance_history(releases, "c") == []


def test_operation_line_says_where_a_rollout_stands():
    op = {"id": "o", "kind": "rollout", "actor": "admin", "state": "running"}
    rolling = {**op, "rollout": {"phase": "rolling", "batch": 2, "batches": 3}}
    assert describe(rolling, "web 1.0.0 → 1.0.1", "running", 1, 3) == (
        "rollout web 1.0.0 → 1.0.1 by admin: in progress (1 of 3 steps, batch 2 of 3)"
    )
    paused = {**rolling, "paused": True}
    assert "paused after the canary: Resume goes on, Cancel rolls it back" in describe(
        paused, "web", "running", 1, 3
    )
    failed = {**op, "state": "failed", "error": "web-2 exited at start"}
    assert describe(failed, "web", "failed", 0, 3).endswith(
        "failed (0 of 3 steps): web-2 exited at start"
    )
    start = {"id": "s", "kind": "start", "level": 2}
    assert (
        describe(start, "shop", "running", 1, 4)
        == "start shop: in progress (1 of 4 steps, start order 2)"
    )


def test_versions_and_drift_are_shown_and_marked():
    tree = SystemTreeModel()
    inst = {
        "id": "i1",
        "name": "web-1",
        "module_id": "m1",
        "node_id": "n",
        "state": "running",
        "version": "1.0.0",
    }
    tree.set_systems(
        [
            {
                "id": "s1",
                "name": "shop",
                "modules": [
                    {
                        "id": "m1",
                        "name": "web",
                        "package": "svc",
                        "version": None,
                        "newest_version": "1.0.1",
                        "start_order": 1,
                    },
                ],
                "instances": [inst],
            }
        ]
    )
    module = tree.item_for("module", "m1").index().siblingAtColumn(VERSION)
    assert module.data() == "newest: 1.0.1"
    cell = tree.item_for("instance", "i1").index().siblingAtColumn(VERSION)
    assert cell.data() == "1.0.0"
    assert tree.update_instance({"id": "i1", "drift": True, "previous_version": "0.9.0"})
    assert cell.data() == "1.0.0 (drift)"
    from PySide6.QtCore import Qt

    assert cell.data(Qt.ItemDataRole.ForegroundRole).color().name() == "#b06000"
    assert "drift:" in cell.data(Qt.ItemDataRole.ToolTipRole)
    assert "0.9.0" in cell.data(Qt.ItemDataRole.ToolTipRole)
    tree.update_instance({"id": "i1", "drift": False, "version": "1.0.1"})
    assert cell.data() == "1.0.1"

    table = InstanceTableModel(tick_ms=10)
    table.set_rows([{**inst, "drift": True}])
    col = table.column("drift")
    assert table.index(0, col).data() == "drift"
    assert table.index(0, col).data(Qt.ItemDataRole.ForegroundRole) is not None
    assert "drift:" in table.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)

    steps = OperationStepModel(tick_ms=10)
    steps.set_rows(
        [
            {
                "instance_id": "i1",
                "from_version": "1.0.0",
                "to_version": "1.0.1",
                "batch": 1,
                "state": "switching",
            }
        ]
    )
    assert steps.index(0, steps.column("versions")).data() == "1.0.0 → 1.0.1"
    assert steps.index(0, steps.column("state")).data() == "switching"


def test_an_operation_in_the_way_is_named_with_what_to_do_here():
    busy = ClientError(
        "operation op1 (rollout) is running on this system: ... POST /api/v1/operations/op1/cancel",
        status=409,
        code="conflict",
        details={"operation_id": "op1", "kind": "rollout"},
    )
    worded = in_the_way(busy)
    assert worded.message == (
        "a rollout (op1) is running on this system: wait for it to end, or cancel it "
        "(Cancel operation, below the systems)"
    )
    assert (worded.status, worded.code, worded.details) == (409, "conflict", busy.details)
    other = ClientError("name taken", status=409, code="already_exists")
    assert in_the_way(other) is other
