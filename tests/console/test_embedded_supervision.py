"""The local master is watched: killed with -9 it is noticed (and reaped), said so, greyed out,
started again on its port (by itself, or from the banner's Restart button), its agent never
left behind, no secret on either command line, and every live view resumes (real processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest

import console.app
import console.embedded
from console import fmt
from console.app import ConsoleApp
from console.models.cells import STALE_COLOR
from tests.console.clicks import click
from tests.console.conftest import until
from tests.console.test_console_e2e import running_service

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc/<pid>/cmdline"),
]


@pytest.fixture
def app(local_console):
    return local_console


def agents_on(work_dir: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "agent" in cmd and work_dir in cmd and p.status() != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def master_pid(app: ConsoleApp) -> int:
    assert app.embedded is not None and app.embedded.proc is not None
    return app.embedded.proc.pid


def no_secrets(app: ConsoleApp) -> None:
    data = app.data_dir
    assert app.embedded is not None
    secrets = [app.embedded.password, (data / "join-token").read_text().strip()]
    master = psutil.Process(master_pid(app))
    [agent] = agents_on(str(data / "agent"))
    for proc in (master, agent):
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace")
        assert not [s for s in secrets if s in argv], f"a secret in the argv of pid {proc.pid}"


async def kill_master(app: ConsoleApp) -> tuple[int, list[psutil.Process]]:
    pid = master_pid(app)
    agents = agents_on(str(app.data_dir / "agent"))
    assert len(agents) == 1
    os.kill(pid, signal.SIGKILL)
    embedded = app.embedded
    assert embedded is not None
    await until(lambda: embedded.exit_reason, what="the death noticed")
    return pid, agents


async def test_a_killed_local_master_is_noticed_restarted_and_live_again(
    qtbot, app, tmp_path, monkeypatch
):
    _, instance_id = await running_service(app, tmp_path)
    no_secrets(app)
    url = app.embedded.url
    # Live views: the instance's figures and chart, and its stdout followed.
    app.window.show_page("instances")
    app.instances_page.table.select_key(instance_id)
    await until(lambda: len(app.store.get(instance_id, "cpu_percent")) >= 2, what="a chart")
    logs = app.logs_page
    logs.follow.setChecked(True)
    app.window.show_page("logs")
    logs.show_instance(instance_id)
    await until(lambda: app.logs.following and "tick" in logs.text.toPlainText(), what="logs")
    app.window.show_page("overview")

    # kill -9: noticed at once, reaped, said so in words, greyed; its agent does not linger.
    pid, agents = await kill_master(app)
    assert not psutil.pid_exists(pid), "the killed master was left a zombie"
    assert app.embedded.exit_reason == "was killed by signal 9 (SIGKILL)"
    banner = app.window.offline_banner
    await until(lambda: banner.isVisible(), what="the banner")
    assert "The local master was killed by signal 9 (SIGKILL)" in banner.label.text()
    assert app.overview.live is False and app.fleet.instances.stale
    assert "(last known)" in app.overview.node_card.title.text()
    assert STALE_COLOR in app.overview.node_card.value.styleSheet()
    _gone, alive = psutil.wait_procs(agents, timeout=15)
    assert alive == [], "the agent outlived its master"

    # Started again by itself on the same port; the views come back to life.
    await until(lambda: app.embedded.running, timeout=60, what="restarted by itself")
    assert app.embedded.url == url
    await until(lambda: app.session.reachable, timeout=60, what="the stream back")
    await until(lambda: not banner.isVisible(), what="the banner gone")
    assert app.overview.live and not app.fleet.instances.stale
    await until(lambda: len(agents_on(str(app.data_dir / "agent"))) == 1, what="one agent")
    no_secrets(app)
    keys = app.session.stream.keys
    assert f"metrics:{instance_id}" in keys and f"log:{instance_id}:stdout" in keys
    since = time.time()
    await until(
        lambda: app.store.get(instance_id, "cpu_percent").last_ts > since,
        timeout=30,
        what="new samples in the chart",
    )
    shown = logs.text.toPlainText().count("tick")
    await until(lambda: logs.text.toPlainText().count("tick") > shown + 2, what="logs followed")
    app.window.show_page("instances")
    await until(
        lambda: fmt.timestamp((app.fleet.instances.live(instance_id) or {}).get("ts")) > since,
        what="new live figures in the table",
    )

    # Killed again soon after: no restart by itself this time (patched delay), the banner's
    # Restart button does it.
    monkeypatch.setattr(console.app, "RESTART_DELAYS", (600, 600, 600))
    await kill_master(app)
    await until(lambda: banner.button.isVisible(), what="the Restart button")
    assert banner.button.text() == "Restart now"
    await click(qtbot, banner.button)
    await until(lambda: app.embedded.running, timeout=60, what="restarted from the button")
    await until(lambda: app.session.reachable, timeout=60, what="the stream back again")
    await until(lambda: len(agents_on(str(app.data_dir / "agent"))) == 1, what="one agent")


def slowed_stray_agent_stops(monkeypatch, first_only: bool) -> list[int]:
    """Make `stop_stray_agent` (run by the watcher after a death, and by each start) take 2 s,
    so that what races with it can be made to happen; returns its calls."""
    real = console.embedded.stop_stray_agent
    calls: list[int] = []

    def slow(work_dir, timeout: float = 15.0) -> None:
        calls.append(1)
        if len(calls) == 1 or not first_only:
            time.sleep(2.0)
        real(work_dir, timeout)

    monkeypatch.setattr(console.embedded, "stop_stray_agent", slow)
    return calls


async def test_a_restart_runs_once_and_a_closing_console_overtakes_it_quietly(app, monkeypatch):
    """The timer and the Restart button may both ask: one start. A console closing while the
    local master starts again starts nothing, logs into nothing, and raises nothing."""
    assert await app.start_embedded(), app.embedded.tail() if app.embedded else "no master"
    monkeypatch.setattr(console.app, "RESTART_DELAYS", (600, 600, 600))
    await kill_master(app)
    master = app.embedded
    slowed_stray_agent_stops(monkeypatch, first_only=False)
    starts: list[int] = []
    real_start = master.start

    async def counted(timeout: float = 60.0) -> None:
        starts.append(1)
        await real_start(timeout)

    monkeypatch.setattr(master, "start", counted)
    first = app.restart_embedded()
    await until(lambda: starts, what="the first restart under way")
    second = app.restart_embedded()
    await asyncio.sleep(0.2)
    assert len(starts) == 1, "a second restart started a second master"
    await app.shutdown()
    assert await first is False
    await second
    assert master.proc is None, "a master was started after the console closed"
    assert app.session.client is None, "the closed console logged in again"


async def test_a_restart_before_the_death_is_handled_is_not_taken_for_a_new_death(app, monkeypatch):
    """The Restart button is offered as soon as the stream drops; pressed while the watcher
    still reaps the old master, the new master must not be reported dead."""
    assert await app.start_embedded(), app.embedded.tail() if app.embedded else "no master"
    monkeypatch.setattr(console.app, "RESTART_DELAYS", (600, 600, 600))
    calls = slowed_stray_agent_stops(monkeypatch, first_only=True)  # the watcher's call
    deaths = app._quick_deaths
    await kill_master(app)
    watcher = app.embedded._watch
    assert watcher is not None
    assert await app.restart_embedded(), app.embedded.tail()
    await asyncio.wait_for(watcher, 30)  # the old master's watcher has said what it says
    assert len(calls) >= 2
    assert app._quick_deaths == deaths
    assert not app._restart_timer.isActive(), "the running master was taken for a new death"
    assert app.embedded.running
