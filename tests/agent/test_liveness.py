"""The keepalive's liveness probe: a link whose pongs stop is left before the pong deadline
only when the master's process stops answering its probe too (a stopped master), never while
the probe is answered (a busy loop) or was never answered (a proxy, an older master)."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from agent import liveness
from agent.link import hung_master
from agent.wsclient import ConnectionClosed, connect
from master.liveness import LivenessResponder
from tests.agent.test_wsclient import raw_server, upgrade

DEADLINE = 60.0  # the pong deadline: never reached in these tests


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness, "SUSPECT", 0.2)
    monkeypatch.setattr(liveness, "PROBE_WAIT", 0.4)
    monkeypatch.setattr(liveness, "PROBE_EVERY", 0.1)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A master whose loop is stuck (or stopped) after the handshake: no pong ever."""
    await upgrade(reader, writer)
    await asyncio.sleep(DEADLINE)


@contextlib.asynccontextmanager
async def master(answering: bool) -> AsyncIterator[tuple[str, LivenessResponder | None]]:
    async with raw_server(silent) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        address = [(socket.AF_INET, ("127.0.0.1", port))]
        responder = LivenessResponder(address).start() if answering else None
        try:
            yield url, responder
        finally:
            if responder is not None:
                responder.close()


async def test_a_stopped_master_is_left_before_the_pong_deadline() -> None:
    async with master(answering=True) as (url, responder):
        assert responder is not None
        ws = await connect(url, ping_interval=0.1, ping_timeout=DEADLINE, probe_liveness=True)
        for _ in range(100):  # the probe at the link's start is answered
            if ws._liveness is not None and ws._liveness.proven:
                break
            await asyncio.sleep(0.05)
        responder.close()  # the whole process stops: its probe goes unanswered
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), DEADLINE / 3)
    assert info.value.code == 1011 and hung_master(info.value)


async def test_a_busy_master_that_answers_its_probe_is_kept_until_the_deadline() -> None:
    async with master(answering=True) as (url, _):
        ws = await connect(url, ping_interval=0.1, ping_timeout=DEADLINE, probe_liveness=True)
        await asyncio.sleep(5 * (liveness.SUSPECT + liveness.PROBE_WAIT))
        assert ws._liveness is not None and ws._liveness.proven
        assert ws._closed is None
        await ws.close()


async def test_a_probe_never_answered_leaves_the_pong_deadline_alone() -> None:
    async with master(answering=False) as (url, _):
        ws = await connect(url, ping_interval=0.1, ping_timeout=DEADLINE, probe_liveness=True)
        await asyncio.sleep(5 * (liveness.SUSPECT + liveness.PROBE_WAIT))
        assert ws._liveness is not None and not ws._liveness.proven
        assert ws._closed is None
        await ws.close()
