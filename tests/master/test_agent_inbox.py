"""The agent channel's messages, frame by frame, without a socket: what is stored, what is handed
back, what ends the connection and what is skipped."""

import json
import math
import time
from array import array
from pathlib import Path
from typing import Any

import pytest

from master.api.agent_inbox import MAX_FRAME, Inbox, Unreadable
from master.services.agents import AgentLink
from master.services.metrics import instance_key, node_key
from master.services.wiring import Services
from protocol.messages import Hello
from tests.master.inprocess import settings_for


class Silent:
    async def send_text(self, data: str) -> None:
        raise AssertionError("the inbox never answers")

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        raise AssertionError("the socket loop closes, not the inbox")


@pytest.fixture
def svc(tmp_path: Path) -> Services:
    services = Services(settings_for(tmp_path))
    for iid in ("a1", "a2"):
        services.hub.publish("instance", {"id": iid, "node_id": "n1", "state": "running"})
    services.hub.publish("instance", {"id": "b1", "node_id": "n2", "state": "running"})
    return services


def metrics(ts: float, *rows: list[object]) -> str:
    node = [35.5, 41.0, 63.0, 1200, 800, 0.7]
    body = {"type": "metrics", "ts": ts, "interval": 1.0, "node": node, "instances": rows}
    return json.dumps(body)


def test_a_metrics_frame_is_stored_and_carries_the_load(svc: Services):
    link = AgentLink("n1", Silent())
    inbox = Inbox(link, svc)
    now = time.time()
    # b1 is another node's instance: a node reports only its own.
    text = metrics(now, ["a1", 2.5, 1 << 20, 0, 4096, 4], ["b1", 9.0, 1, 1, 1, 1])
    assert inbox.receive(text) is None
    sec, values = svc.metrics.latest(instance_key("a1")) or (0, [])
    assert sec == int(now) and values == [2.5, 1 << 20, 0.0, 4096.0, 4.0]
    assert svc.metrics.latest(instance_key("b1")) is None and svc.metrics.rejected == 1
    assert svc.metrics.latest(node_key("n1")) is not None
    assert link.load.cpu_percent == 35.5 and link.load.load1 == 0.7
    assert svc.agents.messages_in == 1


def test_a_subscribed_instance_gets_its_event_from_the_next_frame_on(svc: Services):
    inbox = Inbox(AgentLink("n1", Silent()), svc)
    sub = svc.hub.subscribe()
    now = time.time()

    def metrics_events() -> list[dict[str, Any]]:
        events = [json.loads(sub.queue.get_nowait()) for _ in range(sub.queue.qsize())]
        return [e for e in events if e["topic"] == "metrics"]  # not the node's load

    inbox.receive(metrics(now - 1, ["a1", 1.0, 1, 1, 1, 1], ["a2", 2.0, 2, 2, 2, 2]))
    assert metrics_events() == []
    sub.keys.add("metrics:a2")  # as the event stream does: change the keys, then say so
    svc.hub.keys_changed()
    inbox.receive(metrics(now, ["a1", 1.0, 1, 1, 1, 1], ["a2", 2.0, 2, 2, 2, 2]))
    got = [(e["data"]["id"], e["data"]["cpu_percent"]) for e in metrics_events()]
    assert got == [("a2", 2.0)]
    svc.hub.unsubscribe(sub)
    inbox.receive(metrics(now + 1, ["a2", 3.0, 3, 3, 3, 3]))
    assert not svc.hub.has_key("metrics:a2") and metrics_events() == []


@pytest.mark.parametrize(
    ("text", "code"),
    [("{not json", 1007), ('{"type": "metrics", "ts": 1', 1007), (" " * (MAX_FRAME + 1), 1009)],
)
def test_frames_that_end_the_connection(svc: Services, text: str, code: int):
    with pytest.raises(Unreadable) as caught:
        Inbox(AgentLink("n1", Silent()), svc).receive(text)
    assert caught.value.code == code


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"type": "metrics", "ts": "not a number"}),
        json.dumps({"type": "metrics", "ts": 1.0, "instances": [["a1", -1, 0, 0, 0, 0]]}),
        json.dumps({"type": "metrics", "ts": 1.0, "instances": [["a1", 1.0]]}),
        json.dumps({"type": "metrics", "ts": 1.0, "interval": 0}),
        json.dumps({"type": "from_a_newer_agent", "x": 1}),
        json.dumps([1, 2, 3]),
    ],
)
def test_json_it_does_not_understand_is_skipped(svc: Services, text: str):
    link = AgentLink("n1", Silent())
    assert Inbox(link, svc).receive(text) is None
    assert svc.metrics.messages == 0 and len(svc.metrics.store) == 0
    assert svc.agents.messages_in == 1  # it still proved the agent alive


def test_a_repeated_hello_is_handed_back_to_be_reconciled(svc: Services):
    hello = {"type": "hello", "agent_version": "1.0", "host": {"hostname": "h1"}}
    got = Inbox(AgentLink("n1", Silent()), svc).receive(json.dumps(hello))
    assert isinstance(got, Hello) and got.host.hostname == "h1"


def test_a_goodbye_makes_the_disconnection_planned(svc: Services):
    link = AgentLink("n1", Silent())
    Inbox(link, svc).receive(json.dumps({"type": "goodbye", "reason": "systemd stop"}))
    assert link.leaving


def test_figures_are_kept_as_float32_and_one_beyond_float32_as_infinity(svc: Services):
    """Rows after a series' first one are written into its open block in place: the same float32
    values as before, and a figure too large for float32 stored as infinity, not an error.
    Two rows of each kind in a row: a block boundary can fall between only one pair."""
    inbox = Inbox(AgentLink("n1", Silent()), svc)
    now = int(time.time())
    rows = [
        [0.1, 3.3e9, 1e-3, 7.7, 4],
        [2.53, 1e39, 0, 4096, 4],
        [2.54, 1e39, 0, 4096, 4],
        [99.99, 48 << 20, 1.5, 0, 1],
        [0.07, 48 << 20, 1.5, 0, 1],
    ]
    for k, figures in enumerate(rows):
        inbox.receive(metrics(now - 4 + k, ["a1", *figures]))
        sec, values = svc.metrics.latest(instance_key("a1")) or (0, [])
        assert sec == now - 4 + k
        want = list(array("f", figures))
        assert values == want and (values[1] == math.inf) == (figures[1] == 1e39)
    assert svc.metrics.store.dropped_old == 0


def test_take_handles_a_plain_frame_where_it_is_parsed(svc: Services):
    """`take` (called by the socket's sink as the frame is parsed) stores a metrics frame as
    `receive` does, and counts it."""
    link = AgentLink("n1", Silent())
    inbox = Inbox(link, svc)
    link.last_seen = 0.0
    now = time.time()
    assert inbox.take(metrics(now, ["a1", 2.5, 1 << 20, 0, 4096, 4])) is True
    sec, values = svc.metrics.latest(instance_key("a1")) or (0, [])
    assert sec == int(now) and values == [2.5, 1 << 20, 0.0, 4096.0, 4.0]
    assert link.load.cpu_percent == 35.5 and link.last_seen > 0.0
    assert svc.agents.messages_in == 1
    assert inbox.take(json.dumps({"type": "goodbye", "reason": "stop"})) is True
    assert link.leaving


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"type": "hello", "agent_version": "1.0", "host": {"hostname": "h1"}}),
        "{not json",
        " " * (MAX_FRAME + 1),
        json.dumps({"type": "metrics", "ts": "not a number"}),
        json.dumps({"type": "from_a_newer_agent", "x": 1}),
    ],
)
def test_take_leaves_to_receive_what_needs_awaiting_closing_or_logging(svc: Services, text: str):
    """A hello (awaited), a frame that closes the socket and one that is logged are declined
    with nothing done: `receive` then handles them once, as before."""
    link = AgentLink("n1", Silent())
    link.last_seen = 0.0
    assert Inbox(link, svc).take(text) is False
    assert svc.agents.messages_in == 0 and link.last_seen == 0.0
    assert svc.metrics.messages == 0
