"""A console given two masters on one PostgreSQL database and one S3 bucket: kill -9 the master it
is on and it goes on on the other by itself, saying so, its tables still listing the node and its
subscriptions sent again (live figures); an action that failed on the dead master is reported, not
sent again. A hung master (SIGSTOP) is left by the stream's keepalive."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from console import message
from console.app import ConsoleApp, load_style
from tests.console.conftest import settled, until
from tests.e2e.test_s3_store import s3_flags
from tests.support import ADMIN_PASSWORD, Master, free_port, start_masters

pytestmark = pytest.mark.slow


async def test_the_console_moves_to_the_other_master_when_its_master_is_killed(
    settings, agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path
):
    shots = os.environ.get("GDOS_CONSOLE_SHOTS")  # a folder: grabs of the window after the move
    if shots:
        load_style(QApplication.instance())
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "console-failover")]
    a, b = (Master(tmp_path / name, extra=flags) for name in ("a", "b"))
    console = ConsoleApp(settings, data_dir=tmp_path / "embedded", tick_ms=20)
    console.window.resize(1200, 700)
    console.window.show()
    session = console.session
    try:
        start_masters([a, b])
        ids = {m.url: (m.data_dir / "master-id").read_text().strip() for m in (a, b)}
        maker = next(m for m in (a, b) if (m.data_dir / "join-token").exists())
        agent = agent_factory(a, extra=["--master", f"{a.url},{b.url}"], token=maker.join_token)
        node_id = agent.start_and_wait(a.api())

        message.bridge().history.clear()
        assert await console.login_with(
            {
                "url": f"{a.url},{b.url}",
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "verify": True,
                "ca": "",
            }
        )
        assert settings.value("login/url") == f"{a.url},{b.url}"  # saved for the next log-in
        console.window.show_page("masters")
        await until(lambda: console.masters.model.rowCount() == 2, what="both masters listed")
        await until(lambda: console.fleet.nodes.row(node_id), what="the node listed")
        assert f"(master {ids[a.url]})" in console.window.conn_label.text()
        await session.subscribe([f"metrics:{node_id}"])  # the node's live figures
        await settled()

        since = time.monotonic()
        a.kill9()
        # An action sent meanwhile fails in words and is not sent again on the other master.
        assert await console.users.create("made-while-moving", "a-long-password", "viewer") is None
        await until(lambda: session.client and session.client.base_url == b.url, what="moved")
        await until(lambda: f"(master {ids[b.url]})" in console.window.conn_label.text())
        await until(lambda: session.reachable, what="B's event stream")
        print(f"kill -9: on B, its stream up, after {time.monotonic() - since:.1f} s")
        texts = [text for _, text in message.bridge().history]
        assert any(
            t.startswith("creating the user failed: cannot reach the master at " + a.url)
            for t in texts
        ), texts
        assert any(f"moved to master {ids[b.url]} at {b.url}" in t for t in texts), texts
        # Backups are SQLite's: on PostgreSQL the page says so, no error at each reconnect.
        assert not any("listing backups failed" in t for t in texts), texts
        assert "pg_dump" in console.backups_page.table.notice.text()

        # Its tables come from B now: the node is there, online again once its agent moved.
        await until(
            lambda: (console.fleet.nodes.row(node_id) or {}).get("master_id") == ids[b.url],
            60,
            what="the node held by B",
        )
        assert (console.fleet.nodes.row(node_id) or {}).get("status") == "online"
        session.live.samples.pop(node_id, None)
        await until(lambda: node_id in session.live.samples, 30, what="live figures through B")
        await until(
            lambda: any(
                r.get("current") and r["id"] == ids[b.url] for r in console.masters.model.rows()
            ),
            what="B marked as this console's master",
        )
        assert "made-while-moving" not in {u.username for u in await session.require().users()}
        if shots:
            await until(
                lambda: any(r.get("status") == "offline" for r in console.masters.model.rows()),
                30,
                what="A shown offline",
            )
            console.window.grab().save(str(Path(shots) / "masters-after-failover.png"))
            console.window.show_page("nodes")
            console.window.grab().save(str(Path(shots) / "nodes-after-failover.png"))
    finally:
        await console.shutdown()
        console.window.close()
        for m in (a, b):
            m.stop()


async def test_a_hung_master_is_left_by_its_event_stream_and_taken_again_when_it_answers(
    settings, tmp_path
):
    """SIGSTOP: nothing is refused, only the keepalive notices; the session then goes round its
    URLs (here two names of the same master) until one answers again."""
    master = Master(tmp_path / "m", port=free_port()).launch()
    other = master.url.replace("127.0.0.1", "localhost")
    console = ConsoleApp(settings, data_dir=tmp_path / "embedded", tick_ms=20)
    console.window.show()
    session = console.session
    moving: list[tuple[str, str]] = []
    moved: list[tuple[str, str, str]] = []
    session.failover.moving.connect(lambda *a: moving.append(a))
    session.failover.moved.connect(lambda *a: moved.append(a))
    stopped = False
    try:
        assert await console.login_with(
            {
                "url": f"{master.url},{other}",
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "verify": True,
                "ca": "",
            }
        )
        await until(lambda: session.reachable, what="the stream up")
        await settled()
        since = time.monotonic()
        os.kill(master.pid, signal.SIGSTOP)
        stopped = True
        await until(lambda: moving, 30, what="the hung master left")
        print(f"SIGSTOP: left after {time.monotonic() - since:.1f} s")
        assert moving[0] == (master.url, "its event stream did not come back")
        assert not session.reachable and console.window.offline_banner.isVisible()
        since = time.monotonic()
        os.kill(master.pid, signal.SIGCONT)
        stopped = False
        await until(lambda: moved and session.reachable, 60, what="on a master again")
        print(f"SIGCONT: on a master again after {time.monotonic() - since:.1f} s")
        assert session.client is not None and session.client.base_url in (master.url, other)
        await until(lambda: not console.window.offline_banner.isVisible(), what="banner gone")
    finally:
        if stopped:
            os.kill(master.pid, signal.SIGCONT)
        await console.shutdown()
        console.window.close()
        master.stop()
