"""apply's plan as data: the file and the master's state in, the actions out."""

import pytest

from gdosctl import plan
from gdosctl.errors import USAGE, CtlError
from gdosctl.spec import from_data

NODES = [{"id": "n1aaaaaaaaaa", "hostname": "node-a"}, {"id": "n2bbbbbbbbbb", "hostname": "node-b"}]
FILE = {
    "system": "shop",
    "description": "the shop",
    "modules": [
        {
            "name": "web",
            "package": "web",
            "version": "1.0.1",
            "env": {"LOG_LEVEL": "info"},
            "instances": [{"node": "node-a"}, {"node": "node-b"}],
        }
    ],
}


def inst(iid, name, node="n1aaaaaaaaaa", version="1.0.1", module="m1", **extra):
    return {
        "id": iid,
        "name": name,
        "node_id": node,
        "module_id": module,
        "version": version,
        **extra,
    }


def state(instances=None, **module):
    mod = {
        "id": "m1",
        "name": "web",
        "package": "web",
        "version": "1.0.1",
        "start_order": 1,
        "env": {"LOG_LEVEL": "info"},
        "args": None,
        **module,
    }
    default = [inst("i1", "web-1"), inst("i2", "web-2", node="n2bbbbbbbbbb")]
    return {
        "id": "s1",
        "name": "shop",
        "description": "the shop",
        "modules": [mod],
        "instances": default if instances is None else instances,
    }


def make(file=FILE, system=None, releases=True, rollout=True, newest=None):
    world = plan.World(system, NODES, newest or {"web": "1.0.2"}, releases)
    return plan.make(from_data(file), world, rollout)


def ops(p):
    return [(a.kind, a.op) for a in p.actions]


def test_from_nothing_everything_is_created():
    p = make()
    assert ops(p) == [
        ("created", "create_system"),
        ("created", "create_module"),
        ("created", "deploy"),
        ("created", "deploy"),
    ]
    assert [a.args["node_id"] for a in p.actions if a.op == "deploy"] == [
        "n1aaaaaaaaaa",
        "n2bbbbbbbbbb",
    ]


def test_a_system_that_matches_needs_nothing():
    assert make(system=state()).empty


def test_drift_is_put_back():
    drifted = state(env={"LOG_LEVEL": "debug", "EXTRA": "1"}, start_order=3)
    p = make(system=drifted)
    (action,) = p.actions
    assert action.op == "update_module"
    assert action.args["changes"] == {"start_order": 1, "env": {"LOG_LEVEL": "info"}}
    assert "start order 3 -> 1" in action.text and "-EXTRA" in action.text


def test_a_missing_instance_is_deployed_and_an_extra_one_removed():
    p = make(system=state([inst("i1", "web-1"), inst("i3", "web-3")]))
    assert sorted(ops(p)) == [("created", "deploy"), ("removed", "destroy")]
    by_op = {a.op: a for a in p.actions}
    assert by_op["deploy"].args["node_id"] == "n2bbbbbbbbbb"
    assert by_op["destroy"].args["name"] == "web-3"


def test_a_module_not_in_the_file_is_removed_with_its_instances_but_adopted_ones_stay():
    current = state()
    current["modules"].append(
        {
            "id": "m2",
            "name": "old",
            "package": "old",
            "version": None,
            "start_order": 1,
            "env": {},
            "args": None,
        }
    )
    current["instances"] += [inst("i9", "old-1", module="m2"), inst("a1", "legacy", module=None)]
    p = make(system=current)
    assert ops(p) == [("removed", "destroy"), ("removed", "delete_module")]
    assert [a.op for a in p.ordered()] == ["destroy", "delete_module"]


def test_a_new_version_is_rolled_out_or_only_set_with_no_rollout():
    behind = state(
        [
            inst("i1", "web-1", version="1.0.0"),
            inst("i2", "web-2", node="n2bbbbbbbbbb", version="1.0.0"),
        ],
        version="1.0.0",
    )
    p = make(system=behind)
    (action,) = p.actions
    assert (action.kind, action.op, action.args["version"]) == ("rolled_out", "rollout", "1.0.1")
    assert "1.0.0 -> 1.0.1 (2 instance(s), batch 1)" in action.text
    p = make(system=behind, rollout=False)
    (action,) = p.actions
    assert action.op == "update_module" and action.args["changes"] == {"version": "1.0.1"}
    assert "not rolled out" in action.text


def test_the_newest_version_is_what_an_absent_version_means():
    file = {**FILE, "modules": [{**FILE["modules"][0], "version": None}]}
    p = make(file, system=state(version=None), newest={"web": "1.0.2"})
    (action,) = p.actions
    assert action.op == "rollout" and action.args == {
        "module": "web",
        "version": "1.0.2",
        "then_newest": True,
    }
    on_newest = state(
        [
            inst("i1", "web-1", version="1.0.2"),
            inst("i2", "web-2", node="n2bbbbbbbbbb", version="1.0.2"),
        ],
        version=None,
    )
    assert make(file, system=on_newest).empty


def test_without_the_releases_api_a_rollout_is_refused_before_anything_moves():
    behind = state([inst("i1", "web-1", version="1.0.0")], version="1.0.0")
    with pytest.raises(CtlError) as info:
        make(system=behind, releases=False)
    assert info.value.code == USAGE and "releases API" in info.value.message


def test_per_instance_settings_are_set_and_kept():
    file = {
        **FILE,
        "modules": [
            {
                **FILE["modules"][0],
                "instances": [
                    {"node": "node-a", "env": {"PORT": "8001"}},
                    {"node": "node-b", "env": {"PORT": "8002"}, "args": ["-v"]},
                ],
            }
        ],
    }
    current = state(
        [
            inst("i1", "web-1", settings={"env": {"PORT": "8001"}, "args": None}),
            inst("i2", "web-2", node="n2bbbbbbbbbb", settings={"env": {}, "args": None}),
        ]
    )
    (action,) = make(file, system=current).actions
    assert action.op == "update_instance" and action.args["instance_id"] == "i2"
    assert action.args["changes"] == {"env": {"PORT": "8002"}, "args": ["-v"]}
    with pytest.raises(CtlError):
        make(file, system=current, releases=False)


def test_nodes_are_named_by_hostname_id_or_prefix():
    file = {
        **FILE,
        "modules": [
            {**FILE["modules"][0], "instances": [{"node": "n1aaaaaaaaaa"}, {"node": "n2b"}]}
        ],
    }
    assert make(file, system=state()).empty
    bad = {**FILE, "modules": [{**FILE["modules"][0], "instances": [{"node": "n"}]}]}
    with pytest.raises(CtlError) as info:
        make(bad, system=state())
    assert info.value.code == USAGE and "module web" in info.value.message


def test_instances_pair_in_number_order_not_text_order():
    assert plan.instance_order({"name": "web-10"}) > plan.instance_order({"name": "web-9"})
