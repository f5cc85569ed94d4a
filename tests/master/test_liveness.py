"""Liveness: a silent agent is dropped, but a stalled master does not blame its agents."""

import asyncio
import contextlib
import time

from master.services.agents import AgentLink, AgentRegistry, watch_liveness


class _Channel:
    async def send_text(self, data: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def test_a_stalled_loop_extends_the_grace_and_silence_still_counts():
    registry = AgentRegistry()
    link = AgentLink("n1", _Channel())
    registry.attach(link)
    dropped: list[AgentLink] = []

    async def on_stale(stale: AgentLink) -> None:
        dropped.append(stale)
        registry.detach(stale)

    watcher = asyncio.create_task(watch_liveness(registry, 1.0, on_stale))
    try:
        await asyncio.sleep(0.3)
        link.touch()
        time.sleep(1.6)  # the master is stuck: the agent's heartbeats wait in the socket
        await asyncio.sleep(0.4)
        link.touch()  # ...and are read once the loop runs again
        await asyncio.sleep(0.3)
        assert dropped == []
        await asyncio.sleep(2.5)  # now the agent really is silent
        assert dropped == [link]
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
