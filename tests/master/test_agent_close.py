"""Closing an agent's socket that its agent already left (gone before its hello, under load) is
quiet: no traceback per agent in the master's log."""

from typing import Any

import pytest
from fastapi import WebSocketDisconnect

from master.api.agent import _close


class GoneSocket:
    """The OS seam: the peer went away, so sending the close frame fails."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closes: list[tuple[int, str]] = []

    async def close(self, code: int, reason: str) -> Any:
        self.closes.append((code, reason))
        raise self.error


@pytest.mark.parametrize("error", [WebSocketDisconnect(1006), RuntimeError("already closed")])
async def test_closing_a_socket_whose_agent_left_raises_nothing(error: Exception) -> None:
    ws = GoneSocket(error)
    await _close(ws, 1008, "expected hello")  # type: ignore[arg-type]
    assert ws.closes == [(1008, "expected hello")]


async def test_other_errors_still_surface() -> None:
    with pytest.raises(ValueError):
        await _close(GoneSocket(ValueError("bug")), 1008, "x")  # type: ignore[arg-type]
