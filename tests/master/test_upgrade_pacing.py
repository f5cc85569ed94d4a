"""WebSocket handshakes begun a few per turn of the event loop (master/server.py
`UpgradePacer`): a reconnecting fleet's handshakes are spread over turns, every one of them
completes, and plain HTTP requests are not held behind them."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from websockets.asyncio.client import connect

from master.server import UpgradePacer, guarded_protocol
from tests.support import free_port


async def test_at_most_per_turn_handshakes_begin_in_a_turn_the_rest_in_arrival_order() -> None:
    pacer = UpgradePacer(per_turn=3)
    turn = 0
    began: list[tuple[int, int]] = []

    async def count_turns() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)  # one turn of the loop
            turn += 1

    ticker = asyncio.create_task(count_turns())
    await asyncio.sleep(0)

    def upgrade(n: int) -> Callable[[], None]:
        return lambda: began.append((n, turn))

    now = [pacer.begin(upgrade(n)) for n in range(10)]
    for _ in range(20):
        await asyncio.sleep(0)
    ticker.cancel()
    assert now == [True] * 3 + [False] * 7
    assert [n for n, _ in began] == list(range(10))  # arrival order
    per_turn: dict[int, int] = {}
    for _, t in began:
        per_turn[t] = per_turn.get(t, 0) + 1
    assert max(per_turn.values()) == 3 and len(per_turn) == 4
    assert pacer.deferred == 7


class Echo:
    """Answers each WebSocket text frame, and `GET /` with ok."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"]})


async def test_a_burst_of_handshakes_is_paced_and_every_one_completes() -> None:
    pacer = UpgradePacer(per_turn=2)
    port = free_port()
    config = uvicorn.Config(
        Echo(), host="127.0.0.1", port=port, http=guarded_protocol(pacer), lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)

        async def one(n: int) -> str:
            async with connect(f"ws://127.0.0.1:{port}/", proxy=None, open_timeout=30) as ws:
                await ws.send(f"hi {n}")
                return str(await ws.recv())

        answers = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(40))), 60)
        assert answers == [f"hi {n}" for n in range(40)]
        assert pacer.deferred > 0  # the burst did not all begin in one turn
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    finally:
        server.should_exit = True
        await serving
