"""The agent's reconnect loop survives what it did not expect."""

import asyncio
from pathlib import Path
from typing import cast

import pytest

from agent import link as link_module
from agent.credential import Credential
from agent.executor.supervisor import Supervisor
from agent.link import Link


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
