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


async def test_a_fleet_gone_silent_is_dropped_one_node_per_turn_of_the_loop():
    registry = AgentRegistry()
    links = [AgentLink(f"n{n}", _Channel()) for n in range(5)]
    for link in links:
        registry.attach(link)
        link.last_seen -= 10  # silent well past the grace
    turns = 0
    seen: list[int] = []  # the loop's turns counted when each node is dropped

    async def on_stale(stale: AgentLink) -> None:
        seen.append(turns)
        registry.detach(stale)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    watcher = asyncio.create_task(watch_liveness(registry, 1.0, on_stale))
    try:
        for _ in range(100):
            if len(seen) == len(links):
                break
            await asyncio.sleep(0.1)
        assert len(seen) == len(links)
        assert len(set(seen)) == len(seen)  # other work ran between two drops
        assert registry.links == {}
    finally:
        for task in (watcher, counter):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_node_heard_from_while_others_are_dropped_stays():
    registry = AgentRegistry()
    first, second = AgentLink("n1", _Channel()), AgentLink("n2", _Channel())
    for link in (first, second):
        registry.attach(link)
        link.last_seen -= 10
    dropped: list[AgentLink] = []

    async def on_stale(stale: AgentLink) -> None:
        dropped.append(stale)
        registry.detach(stale)
        (second if stale is first else first).touch()  # its message was read meanwhile

    watcher = asyncio.create_task(watch_liveness(registry, 1.0, on_stale))
    try:
        for _ in range(100):
            if dropped:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert len(dropped) == 1 and len(registry.links) == 1
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
