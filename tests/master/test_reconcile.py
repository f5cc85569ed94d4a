"""The reconciliation decision of a node's hello, case by case: rows and reports in, the changes
to write, the views to publish and the commands to re-drive out."""

from __future__ import annotations

from typing import Any

import pytest

from master.services.reconcile import NOT_ON_NODE, reconcile
from protocol.messages import InstanceReport
from protocol.states import InstanceState as S


def row(state: str, desired: str = "running", **kw: Any) -> dict[str, Any]:
    base = {
        "id": "i1",
        "system_id": "s",
        "module_id": "m",
        "node_id": "n",
        "name": "web-1",
        "package_id": "p",
        "version": "1",
        "state": state,
        "desired_state": desired,
        "health": "unknown",
        "pid": None,
        "started_at": None,
        "restarts": 0,
        "exit_code": None,
        "last_error": None,
        "adopted": False,
        "health_detail": None,
        "adoption": None,
        "user": None,
        "module_index": 1,
        "override_env": None,
        "override_args": None,
        "override_user": None,
        "previous_version": None,
        "previous_package_id": None,
        "applied": None,
        "drift": False,
    }
    return {**base, **kw}


def report(state: S, **kw: Any) -> InstanceReport:
    return InstanceReport("i1", state, **kw)


# (case, row, report or None, state written or None when nothing is written, action or None)
CASES = [
    ("a start that never arrived", row("unknown"), report(S.STOPPED), "starting", "start"),
    ("a stop that never arrived", row("unknown", "stopped"), report(S.RUNNING), "stopping", "stop"),
    ("a start re-driven again", row("starting"), report(S.STOPPED), None, "start"),
    ("running as wanted", row("unknown"), report(S.RUNNING, pid=7), "running", None),
    ("stopped as wanted", row("unknown", "stopped"), report(S.STOPPED), "stopped", None),
    ("exited, not to be running", row("unknown", "stopped"), report(S.EXITED), "exited", None),
    ("nothing new", row("running", pid=7), report(S.RUNNING, pid=7), None, None),
    ("a destroy in progress", row("destroying", "stopped"), report(S.RUNNING), None, "destroy"),
    ("destroyed while away", row("destroying", "stopped"), None, None, "forget"),
    ("a deploy that never arrived", row("deploying", "stopped"), None, None, "deploy"),
    ("gone from the node", row("running", pid=7), None, "failed", None),
]


def test_a_restart_cut_off_mid_stop_is_started_and_a_crash_is_not():
    """An ended process is started again only when the master's restart lost its stop."""
    ended = report(S.EXITED, exit_code=-15)
    cut = reconcile({"i1": row("unknown")}, [ended], restarting={"i1"})
    assert cut.actions == [("start", "i1")] and cut.changes["i1"]["state"] == "starting"
    crashed = reconcile({"i1": row("unknown")}, [ended])
    assert crashed.actions == [] and crashed.changes["i1"]["state"] == "exited"
    wanted_stopped = reconcile({"i1": row("unknown", "stopped")}, [ended], restarting={"i1"})
    assert wanted_stopped.actions == []


@pytest.mark.parametrize(
    ("current", "reported", "written", "action"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_hello_decides_what_to_write_and_what_to_redrive(current, reported, written, action):
    decided = reconcile({"i1": current}, [reported] if reported else [])
    if written is None:
        assert decided.changes == {} and decided.views == {}
    else:
        assert decided.changes["i1"]["state"] == written
        assert decided.views["i1"].state == written
    assert decided.actions == ([(action, "i1")] if action else [])
    assert decided.unmanaged == []


def test_an_instance_gone_from_the_node_fails_with_a_reason_and_no_pid():
    decided = reconcile({"i1": row("running", pid=7)}, [])
    assert decided.changes["i1"] == {"state": "failed", "pid": None, "last_error": NOT_ON_NODE}
    assert decided.views["i1"].last_error == NOT_ON_NODE and decided.views["i1"].pid is None


def test_what_the_agent_runs_that_the_master_does_not_know_is_unmanaged_and_left_alone():
    reports = [report(S.RUNNING), InstanceReport("zz", S.RUNNING), InstanceReport("aa", S.EXITED)]
    decided = reconcile({"i1": row("running")}, reports)
    assert decided.unmanaged == ["aa", "zz"]
    assert set(decided.changes) <= {"i1"} and decided.actions == []


def test_the_input_rows_are_not_changed():
    current = row("starting")
    reconcile({"i1": current}, [report(S.STOPPED)])
    assert current == row("starting")


def test_actions_come_in_row_order_and_each_instance_is_decided_alone():
    rows = {
        "a": row("unknown", id="a", name="a"),
        "b": row("destroying", "stopped", id="b", name="b"),
        "c": row("running", id="c", name="c", pid=3),
    }
    reports = [
        InstanceReport("a", S.STOPPED),
        InstanceReport("c", S.RUNNING, pid=3),
    ]
    decided = reconcile(rows, reports)
    assert decided.actions == [("start", "a"), ("forget", "b")]
    assert list(decided.views) == ["a"]


def test_a_change_the_view_does_not_show_is_neither_written_nor_published():
    """A start time off by less than the view's precision is no change; one second is."""
    started = 1_700_000_000.0
    same = reconcile(
        {"i1": row("running", pid=7, started_at=started)},
        [report(S.RUNNING, pid=7, started_at=started + 1e-7)],
    )
    assert same.changes == {} and same.views == {}
    later = reconcile(
        {"i1": row("running", pid=7, started_at=started)},
        [report(S.RUNNING, pid=7, started_at=started + 1)],
    )
    assert later.changes["i1"]["started_at"] == started + 1
    assert later.views["i1"].started_at is not None
