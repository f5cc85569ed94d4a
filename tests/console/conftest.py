"""Console tests: offscreen Qt, and async tests run on the qasync loop (asyncio on Qt's loop)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import pytest
import qasync
from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication


def _app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        QCoreApplication.setOrganizationName("gdos-tests")
        QCoreApplication.setApplicationName("gdos-console-tests")
        app = QApplication([])
    assert isinstance(app, QApplication)
    return app


def _qasync_loop() -> asyncio.AbstractEventLoop:
    return qasync.QEventLoop(_app())


def pytest_asyncio_loop_factories(
    config, item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"qasync": _qasync_loop}


@pytest.fixture(autouse=True)
def gui_thread_gc() -> Iterator[None]:
    """As in the console: cycles are collected on the GUI thread, not on a stream thread."""
    from console.gui_gc import GuiGarbageCollector

    collector = GuiGarbageCollector(_app())
    collector.start()
    yield
    collector.stop()
    collector.deleteLater()


@pytest.fixture
def settings(tmp_path) -> QSettings:
    """A QSettings in a temporary file: tests never touch the user's real settings."""
    _app()
    return QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Wait on the running (Qt) loop until `predicate()` is truthy; no timing asserts."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}: {last!r}")
