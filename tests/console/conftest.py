"""Console tests: offscreen Qt, and async tests run on the qasync loop (asyncio on Qt's loop)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import pytest
import pytestqt.plugin
import qasync
from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication

# pytest-qt processes Qt events between a test's phases. Here Qt's events carry the asyncio
# loop's work (qasync): handled while that loop is not running, they would step tasks outside
# it (httpx then fails with "no running event loop", and closing the loop hangs on them). The
# loop processes Qt's events itself whenever a test or fixture awaits.
pytestqt.plugin._process_events = lambda: None


def _app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        QCoreApplication.setOrganizationName("gdos-tests")
        QCoreApplication.setApplicationName("gdos-console-tests")
        app = QApplication([])
    assert isinstance(app, QApplication)
    return app


class _TestLoop(qasync.QEventLoop):  # type: ignore[misc]
    """qasync's loop without the last `processEvents` of `run_until_complete`: run when the
    loop has stopped, it steps whatever task is in flight outside the loop (the end of every
    async fixture and test here), which then fails or never ends. What is pending simply runs
    at the next `run_until_complete`."""

    def run_until_complete(self, future: Any) -> Any:
        if self.is_running():
            raise RuntimeError("Event loop already running")
        task = asyncio.ensure_future(future, loop=self)

        def stop(_: object) -> None:
            self.stop()

        task.add_done_callback(stop)
        try:
            self.run_forever()
        finally:
            task.remove_done_callback(stop)
        if not task.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return task.result()


def _qasync_loop() -> asyncio.AbstractEventLoop:
    return _TestLoop(_app())


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
    # Cycles the test left are collected here, on the GUI thread: else a later test's thread
    # (an S3 server's, say) may collect a QObject with timers ("Timers cannot be stopped from
    # another thread").
    gc.collect()
    collector.stop()
    collector.deleteLater()


@pytest.fixture
async def local_console(tmp_path, settings):
    """A console window (offscreen) for an embedded master and agent under `tmp_path`; stops
    them, and the services they started, afterwards."""
    from console.app import ConsoleApp
    from tests.support import kill_services_under

    app = ConsoleApp(settings, data_dir=tmp_path / "embedded", tick_ms=50)
    app.window.resize(1200, 800)
    app.window.show()
    try:
        yield app
    finally:
        await app.shutdown()
        app.window.close()
        kill_services_under(tmp_path)


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


async def settled(timeout: float = 30.0) -> None:
    """Until no task but the caller's is pending (the loads a log-in starts are done)."""
    await until(lambda: len(asyncio.all_tasks()) <= 1, timeout, what="the console settled")


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The work directory of the module's agent."""
    from tests.support import kill_services_under

    root = tmp_path_factory.mktemp("node")
    yield root / "agent"
    kill_services_under(root)


@pytest.fixture(scope="module")
def node(shared_master, shared_api, node_dir: Path) -> Iterator[str]:
    """One real agent for the module (beside its `shared_master`); its node id."""
    from tests.support import Agent

    agent = Agent(shared_master, node_dir)
    node_id = agent.start_and_wait(shared_api)
    yield node_id
    agent.stop()


@pytest.fixture
async def connected_console(settings, tmp_path, shared_master, node: str):
    """A console window (offscreen) logged in to the module's master, its agent listed."""
    from PySide6.QtWidgets import QFileDialog

    from console import message
    from console.app import ConsoleApp
    from tests.support import ADMIN_PASSWORD

    console = ConsoleApp(settings, data_dir=tmp_path / "embedded", tick_ms=20)
    console.window.resize(1200, 800)
    console.window.show()
    message.bridge().history.clear()
    await console._login(
        {
            "url": shared_master.url,
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "verify": True,
            "ca": "",
        }
    )
    await until(lambda: console.session.reachable and console.fleet.nodes.row(node), what="loaded")
    await settled()
    try:
        yield console
    finally:
        for w in console.window.findChildren(QFileDialog):
            w.reject()
        await console.shutdown()
        console.window.close()
