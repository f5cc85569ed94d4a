"""Every agent test runs with the state table strict: an illegal state change raises where it
happens, and one logged from a background task fails the test too."""

import logging
from collections.abc import Iterator

import pytest

from agent.executor import states


@pytest.fixture(autouse=True)
def strict_state_changes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    monkeypatch.setattr(states, "STRICT", True)
    yield
    illegal = [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and states.ILLEGAL in r.getMessage()
    ]
    assert not illegal, f"illegal state changes: {illegal}"
