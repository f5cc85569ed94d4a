"""A rollout's decisions without I/O: its steps, batches (counts, shares, a canary), when a
switched instance is ready, and the settings an instance runs with (and its drift)."""

from types import SimpleNamespace
from typing import Any, cast

import pytest

from master.db import models
from master.services import instance_settings
from master.services.operation_steps import Step, StepState
from master.services.rollout_plan import (
    InstanceRow,
    Target,
    assign_batches,
    canary_batch,
    plan,
    readiness,
    summary,
)
from protocol.rest import InstanceOut
from protocol.rest_releases import batch_count


def steps(levels: list[int]) -> list[Step]:
    return [Step(f"i{n}", f"web-{n}", "node", level) for n, level in enumerate(levels, 1)]


@pytest.mark.parametrize(
    ("levels", "size", "canary", "batches"),
    [
        ([1] * 5, 2, 0, [1, 1, 2, 2, 3]),
        ([1] * 5, "25%", 0, [1, 1, 2, 2, 3]),  # 25 % of 5, rounded up: 2
        ([1] * 4, "100%", 0, [1, 1, 1, 1]),
        ([1] * 5, 2, 1, [1, 2, 2, 3, 3]),  # the canary goes alone
        ([1, 1, 2, 2, 2], 2, 0, [1, 1, 2, 2, 3]),  # a level never shares a batch
        ([1, 2, 2], 5, 1, [1, 2, 2]),
    ],
)
def test_batches(levels: list[int], size: int | str, canary: int, batches: list[int]):
    st = steps(levels)
    assert assign_batches(st, size, canary) == max(batches)
    assert [s.batch for s in st] == batches
    assert canary_batch(st, canary) == (1 if canary else None)


def test_batch_count_of_a_share_is_at_least_one():
    assert [batch_count(s, 3) for s in (1, 7, "1%", "34%", "100%")] == [1, 7, 1, 2, 3]


def test_plan_takes_each_module_instance_by_level_then_name():
    targets = [Target("m1", "db", 1, "p1", "2.0", "1.0"), Target("m2", "web", 2, "p2", "3.0", None)]
    rows = [
        InstanceRow("b", "web-1", "n", "m2", "old2", "2.9", False),
        InstanceRow("a", "db-2", "n", "m1", "old1", "1.0", True),
        InstanceRow("c", "db-1", "n", "m1", "old1", "1.0", True),
        InstanceRow("x", "other-1", "n", "m9", "p9", "9", True),  # another module: not moved
    ]
    out = plan(targets, rows)
    assert [(s.name, s.level, s.from_version, s.to_version) for s in out] == [
        ("db-1", 1, "1.0", "2.0"),
        ("db-2", 1, "1.0", "2.0"),
        ("web-1", 2, "2.9", "3.0"),
    ]
    assert [s.was_running for s in out] == [True, True, False]


def view(state: str, pid: int | None = 7, health: str = "unknown", **kw: Any) -> InstanceOut:
    base = {
        "id": "i1",
        "system_id": "s",
        "module_id": "m",
        "node_id": "n",
        "name": "web-1",
        "state": state,
        "desired_state": "running",
        "health": health,
        "pid": pid,
        "started_at": None,
        "restarts": 0,
        "exit_code": None,
        "last_error": None,
        "adopted": False,
        "version": "2",
    }
    return InstanceOut(**{**base, **kw})


ST = Step("i1", "web-1", "n", 1)
CASES = [
    # (case, view, gated, the pid the switch started, outcome)
    ("up, no check", view("running"), False, 7, (StepState.DONE, None)),
    ("up, check not passed yet", view("running"), True, 7, None),
    ("up and healthy", view("running", health="healthy"), True, 7, (StepState.DONE, None)),
    ("an older view of the old process", view("running", pid=3), False, 7, None),
    ("starting", view("starting", pid=None), False, 7, None),
    (
        "crashed at start",
        view("exited", pid=None, last_error="exited with code 3"),
        False,
        7,
        (StepState.FAILED, "web-1 exited at start: exited with code 3"),
    ),
    (
        "crashed and restarted by its policy",
        view("running", pid=9, restarts=1, last_error="exited with code 1; restarting"),
        False,
        7,
        (StepState.FAILED, "web-1 crashed and was restarted (exited with code 1; restarting)"),
    ),
    ("node gone", view("unknown"), False, 7, (StepState.FAILED, "web-1: its node went offline")),
    ("destroyed", view("destroyed"), False, 7, (StepState.FAILED, "web-1 was destroyed")),
]


@pytest.mark.parametrize(("case", "v", "gated", "pid", "want"), CASES, ids=[c[0] for c in CASES])
def test_readiness(case: str, v: InstanceOut, gated: bool, pid: int, want: Any):
    assert readiness(ST, v, gated, pid, 0) == want


def test_the_summary_names_the_failure_and_what_went_back():
    a, b = Step("a", "web-1", "n", 1, from_version="1.0"), Step("b", "web-2", "n", 1)
    b.error = "web-2: rollback failed: node n is offline"
    assert summary("web-1 exited at start: exited with code 3", [a], [b]) == (
        "web-1 exited at start: exited with code 3; rolled back 1 instance(s) to 1.0; "
        "could not roll back web-2: web-2: rollback failed: node n is offline"
    )


def ns(**kw: Any) -> models.Instance:
    base = {"adopted": False, "module_id": "m", "package_id": "p1", "applied": None}
    base.update(kw)
    return cast(models.Instance, SimpleNamespace(**base))


def test_settings_are_the_modules_with_the_instances_own_over_them():
    mod = cast(models.Module, SimpleNamespace(env={"A": "1", "B": "2"}, args=["--x"]))
    inst = ns(override_env={"B": "3"}, override_args=None, override_user="svc", module_index=2)
    s = instance_settings.settings_for(mod, inst)
    assert (s.env, s.args, s.index, s.user) == ({"A": "1", "B": "3"}, ["--x"], 2, "svc")
    inst = ns(override_env=None, override_args=[], override_user=None, module_index=1)
    assert instance_settings.settings_for(mod, inst).args == []  # its own: no arguments


def test_drift_is_a_version_or_settings_that_differ_from_what_it_last_ran():
    mod = cast(models.Module, SimpleNamespace(env={}, args=None))
    pkg = cast(models.Package, SimpleNamespace(id="p2"))
    same = cast(models.Package, SimpleNamespace(id="p1"))
    inst = ns(override_env=None, override_args=None, override_user=None, module_index=1)
    ran = instance_settings.applied("p1", instance_settings.settings_for(mod, inst))
    inst.applied = ran
    assert instance_settings.is_drifted(inst, mod, pkg), "a newer version"
    assert not instance_settings.is_drifted(inst, mod, same)
    inst.override_env = {"PORT": "1"}
    assert instance_settings.is_drifted(inst, mod, same), "its env changed since"
    inst.applied = None  # never started since releases came: not second-guessed
    assert not instance_settings.is_drifted(inst, mod, same)
