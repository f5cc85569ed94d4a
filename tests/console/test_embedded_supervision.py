"""The local master is watched: killed with -9 it is noticed (and reaped), said so, greyed out,
started again on its port (by itself, or from the banner's Restart button), its agent never
left behind, no secret on either command line, and every live view resumes (real processes)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import console.app
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
