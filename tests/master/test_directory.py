"""The in-memory directory keeps one string per node, system and state, however many instances
and events name them (a fleet's 20,000 instances would otherwise hold 60,000 copies)."""

from master.hub import Hub
from master.services.directory import Directory
from protocol.states import InstanceState


def fresh(text: str) -> str:
    """An equal string that is another object, as each event or row brings its own."""
    return "".join(list(text))


def test_instances_of_one_node_share_its_strings() -> None:
    directory = Directory(Hub())
    for n in range(3):
        directory.on_instance(
            {
                "id": f"i{n}",
                "node_id": fresh("node-1"),
                "system_id": fresh("sys-1"),
                "name": f"p{n}",
                "state": fresh("running"),
            }
        )
    infos = [directory.instances[f"i{n}"] for n in range(3)]
    assert infos[0].node_id == "node-1" and infos[0].state == "running"
    for info in infos[1:]:
        assert info.node_id is infos[0].node_id
        assert info.system_id is infos[0].system_id
        assert info.state is infos[0].state
    assert directory.owned_by("node-1") == {"i0", "i1", "i2"}


def test_a_hello_that_changed_a_state_is_learnt_with_the_state_as_a_plain_string() -> None:
    """A hello's reconcile writes states as `InstanceState` members (a str subclass, which
    `sys.intern` refuses): the directory learns the rows all the same, or the whole batch of
    hellos fails and its agents dial again (seen when a take-over outlasted the leader's 5 s)."""
    directory = Directory(Hub())
    row = {"id": "i1", "node_id": "node-1", "system_id": "sys-1", "name": "p1"}
    directory.learn([{**row, "state": InstanceState.STARTING}])
    directory.learn([{**row, "id": "i2", "state": fresh("starting")}])
    info = directory.instances["i1"]
    assert type(info.state) is str and info.state == "starting"
    assert directory.instances["i2"].state is info.state
