"""The agent's reconnect loop survives what it did not expect."""

import asyncio
import random
from pathlib import Path
from typing import cast

import pytest

from agent import link as link_module
from agent.credential import Credential
from agent.executor.supervisor import Supervisor
from agent.link import Link, hung_master
from agent.wsclient import KEEPALIVE_LOST, ClientConnection, ConnectionClosed


async def test_an_unexpected_error_costs_one_connection_not_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(link_module, "BACKOFF_MIN", 0.01)
    cred = Credential("http://127.0.0.1:1", "node-1", "secret")
    link = Link(cred, cast(Supervisor, object()), tmp_path)  # no session reaches it here
    sessions: list[int] = []
    second = asyncio.Event()

    async def session() -> None:
        sessions.append(len(sessions))
        if len(sessions) == 1:
            raise KeyError("a bug in a message handler")
        second.set()
        await asyncio.sleep(30)

    monkeypatch.setattr(link, "_session", session)
    runner = asyncio.create_task(link.run_forever())
    await asyncio.wait_for(second.wait(), 10)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert sessions == [0, 1]
    assert "failed unexpectedly" in caplog.text and "KeyError" in caplog.text


async def test_each_reconnect_goes_to_the_next_master_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "BACKOFF_MIN", 0.01)
    urls = ("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
    link = Link(Credential(urls[0], "node-1", "secret", urls), cast(Supervisor, object()), tmp_path)
    dialled: list[str] = []
    enough = asyncio.Event()

    async def session() -> None:
        dialled.append(link.master)
        if len(dialled) == 5:
            enough.set()
            await asyncio.sleep(30)
        raise OSError("connection refused")

    monkeypatch.setattr(link, "_session", session)
    runner = asyncio.create_task(link.run_forever())
    await asyncio.wait_for(enough.wait(), 10)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert dialled[0] == urls[0] and sorted(dialled[:3]) == sorted(urls)  # each, the first first
    assert dialled[3:] == dialled[:2]  # and round again in the same order


async def test_a_hung_master_is_left_for_the_others_at_once_then_a_refusal_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After a hung master, one round of the other masters with no wait: a dead one refusing
    on the way costs no backoff; a refusal after the round does."""
    monkeypatch.setattr(link_module, "STABLE_AFTER", 0.5)  # the first link lived long enough
    monkeypatch.setattr(link_module, "HUNG_AFTER", 0.5)
    monkeypatch.setattr(link_module, "BACKOFF_MIN", 1000.0)  # no backoff ends within the test
    monkeypatch.setattr(link_module, "BACKOFF_MAX", 1000.0)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    urls = ("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
    link = Link(Credential(urls[0], "node-1", "secret", urls), cast(Supervisor, object()), tmp_path)
    dialled: list[str] = []
    refused = asyncio.Event()

    async def session() -> None:
        dialled.append(link.master)
        if len(dialled) == 1:  # the master stopped answering pings
            await asyncio.sleep(0.6)
            raise ConnectionClosed(1011, KEEPALIVE_LOST)
        if len(dialled) == 3:
            refused.set()
        raise OSError("connection refused")

    monkeypatch.setattr(link, "_session", session)
    caplog.set_level("INFO", logger="agent.link")
    runner = asyncio.create_task(link.run_forever())
    await asyncio.wait_for(refused.wait(), 10)
    await asyncio.sleep(0.2)  # a fourth dial now would have skipped the backoff
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert dialled == list(link.urls)  # the hung one is not dialled again at once
    assert f"reconnecting to {link.urls[1]} in 0.0 s" in caplog.text
    assert f"reconnecting to {link.urls[2]} in 0.0 s" in caplog.text
    assert f"reconnecting to {link.urls[0]} in 1000.0 s" in caplog.text
    assert not hung_master(ConnectionClosed(1006, "connection lost"))


async def test_a_link_that_keeps_missing_its_pongs_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not at once after a link that did not live `STABLE_AFTER`: a fleet bouncing between
    overloaded masters slows down instead of adding to their load."""
    monkeypatch.setattr(link_module, "BACKOFF_MIN", 1000.0)
    monkeypatch.setattr(link_module, "BACKOFF_MAX", 1000.0)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    urls = ("http://127.0.0.1:1", "http://127.0.0.1:2")
    link = Link(Credential(urls[0], "node-1", "secret", urls), cast(Supervisor, object()), tmp_path)
    lost = asyncio.Event()

    async def session() -> None:
        lost.set()
        raise ConnectionClosed(1011, KEEPALIVE_LOST)

    monkeypatch.setattr(link, "_session", session)
    caplog.set_level("INFO", logger="agent.link")
    runner = asyncio.create_task(link.run_forever())
    await asyncio.wait_for(lost.wait(), 10)
    await asyncio.sleep(0.2)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert f"reconnecting to {link.urls[1]} in 1000.0 s" in caplog.text


def test_the_nodes_of_a_lost_master_spread_over_the_others() -> None:
    """Every node dials the first URL first; after it, each node its own order of the others,
    the same at each start: the nodes of the first master do not all land on the second."""
    urls = ("http://a:1", "http://b:2", "http://c:3", "http://d:4")
    orders = [link_module.failover_order(urls, f"node-{n}") for n in range(300)]
    assert all(o[0] == urls[0] and sorted(o) == sorted(urls) for o in orders)
    assert orders == [link_module.failover_order(urls, f"node-{n}") for n in range(300)]
    second = {url: sum(o[1] == url for o in orders) for url in urls[1:]}
    assert all(count > 50 for count in second.values()), second
    assert link_module.failover_order(urls[:1], "node-1") == urls[:1]


def test_the_master_urls_are_kept_with_the_credential(tmp_path: Path) -> None:
    from agent import credential
    from agent.flags import parse_masters

    urls = parse_masters(" http://a:8080/, http://b:8080 ,,http://c:8080")
    assert urls == ("http://a:8080", "http://b:8080", "http://c:8080")
    credential.save(tmp_path, Credential(urls[0], "n1", "s", urls))
    loaded = credential.load(tmp_path)
    assert loaded is not None and loaded.urls == urls and loaded.master == urls[0]
    credential.save(tmp_path, Credential("http://a:8080", "n1", "s"))  # one URL, as before
    single = credential.load(tmp_path)
    assert single is not None and single.urls == ("http://a:8080",)


class _Sent:
    """The master's end of the socket: what the agent sent."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def send(self, text: str) -> None:
        self.texts.append(text)


class _Starts:
    """A supervisor whose starts are counted and finish when the test says."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()

    async def start(self, instance_id: str, settings: object) -> None:
        self.calls.append(instance_id)
        await self.release.wait()


async def test_a_command_id_received_again_runs_once_and_gets_its_first_answer(
    tmp_path: Path,
) -> None:
    import json

    starts = _Starts()
    link = Link(Credential("http://127.0.0.1:1", "n1", "s"), cast(Supervisor, starts), tmp_path)
    sent = _Sent()
    link.ws = cast(ClientConnection, sent)
    start = json.dumps({"type": "start", "id": "a.1f2e3d.7", "instance_id": "i1"})
    link._dispatch(start)
    await asyncio.sleep(0.05)
    link._dispatch(start)  # again while it runs (through another master): not run again
    await asyncio.sleep(0.05)
    assert starts.calls == ["i1"] and sent.texts == []
    starts.release.set()
    for _ in range(100):
        if sent.texts:
            break
        await asyncio.sleep(0.01)
    link._dispatch(start)  # again once it ran: its first answer, not a second start
    for _ in range(100):
        if len(sent.texts) == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert starts.calls == ["i1"]
    answers = [json.loads(t) for t in sent.texts]
    assert [(a["reply_to"], a["ok"]) for a in answers] == [("a.1f2e3d.7", True)] * 2, answers


def test_the_backoff_doubles_once_per_round_of_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each URL is tried once per round before the waits grow: the agents of a lost master do
    not wait out a dead and a hung one before reaching a survivor."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the caps
    delays = link_module.backoff_delays(3)
    caps = [next(delays) for _ in range(9)]
    low = link_module.BACKOFF_MIN
    assert caps == [low] * 3 + [2 * low] * 3 + [4 * low] * 3
    one = link_module.backoff_delays()
    assert [next(one) for _ in range(3)] == [low, 2 * low, 4 * low]  # one URL: as before


def test_a_master_that_hung_after_a_healthy_while_is_left_at_once_a_bouncing_link_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A link that lived `HUNG_AFTER` (a node that moved to a master when another died, and
    that master hung 15 s later) dials the others at once, one round, without resetting the
    backoff; a link that lived only its pong deadline (an overloaded master dropping it) backs
    off as before."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the caps
    low = link_module.BACKOFF_MIN
    redials = link_module.Redials(3)
    assert [redials.after(0.0, False) for _ in range(3)] == [low] * 3  # a round of refusals
    assert redials.after(15.0, True) == 0.0  # hung after a healthy while: the others at once
    assert redials.after(0.0, False) == 0.0  # a dead one on the way: the round goes on
    assert redials.after(0.0, False) == 2 * low  # after the round, the backoff where it was
    bouncing = link_module.Redials(3)
    assert bouncing.after(4.5, True) == low  # dropped by its pong deadline soon after greeting
    closed = link_module.Redials(3)
    assert closed.after(60.0, True) == 0.0  # the next master took the link, one dial left...
    assert closed.after(3600.0, False) == low  # ...but that link lived: a close backs off
    assert link_module.STABLE_AFTER > 15.0 > link_module.HUNG_AFTER > 4.5
