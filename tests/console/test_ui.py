"""Window behaviour: errors in words, the unreachable banner, missing endpoints, window state,
the Masters page and the moves between the URLs of a log-in."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QByteArray, Qt

from console import message
from console.__main__ import main, parse_args
from console.app import ConsoleApp
from console.client import ClientError
from console.models.cells import DISPLAY, KEY_ROLE
from console.ui.dialogs import LoginDialog, ModuleDialog, parse_env
from console.ui.nodes import parse_labels
from tests.console.conftest import settled, until
from tests.support import ADMIN_PASSWORD, Master, build_package, free_port


@pytest.fixture
async def console(settings, tmp_path):
    app = ConsoleApp(settings, data_dir=tmp_path / "embedded", tick_ms=20)
    app.window.show()
    message.bridge().history.clear()
    yield app
    await app.shutdown()
    app.window.close()


def _login(url: str) -> dict:
    return {"url": url, "username": "admin", "password": ADMIN_PASSWORD, "verify": True, "ca": ""}


async def test_failed_login_says_why_in_words(console):
    url = f"http://127.0.0.1:{free_port()}"
    assert await console.login_with(_login(url)) is False
    level, text = message.bridge().history[-1]
    assert level == "error"
    assert text.startswith("log-in failed: cannot reach the master at") and "Traceback" not in text
    assert console.window.error_banner.isVisible()
    dialog = console._login_dialog
    assert isinstance(dialog, LoginDialog) and dialog.isVisible()
    assert "cannot reach" in dialog.problem.text().lower()
    assert dialog.url.text() == url
    dialog.reject()
    assert not console.session.connected
    assert console.window.stack.currentWidget() is console.window.start_page


async def test_banner_while_the_master_is_unreachable(console, tmp_path, settings):
    master = Master(tmp_path / "m", port=free_port()).launch()
    try:
        assert await console.login_with(_login(master.url))
        assert settings.value("login/url") == master.url  # remembered for the next log-in
        await until(lambda: console.session.reachable, what="stream up")
        assert not console.window.offline_banner.isVisible()
        master.stop()
        await until(lambda: console.window.offline_banner.isVisible(), what="banner shown")
        assert "unreachable" in console.window.offline_banner.label.text()
        # Actions while it is away fail in words, and the window keeps the last known state.
        task = console.fleet.create_system("while-away")
        assert await task is None
        assert "cannot reach the master" in message.bridge().history[-1][1]
        master.launch()
        await until(
            lambda: not console.window.offline_banner.isVisible(), timeout=60, what="banner gone"
        )
        assert await console.fleet.create_system("after-return")
        await until(lambda: "after-return" in console.fleet.system_names.values())
    finally:
        master.stop()


async def test_missing_endpoints_show_not_available(console):
    alerts = console.alerts

    async def missing():
        raise ClientError("no such endpoint", status=404, code="not_found")

    assert await alerts.guarded("alerts", missing()) is None
    assert alerts.available["alerts"] is False
    notice = console.alerts_page.notice
    assert not notice.isHidden()
    assert "not available on this master" in notice.text()
    assert await console.backups.guarded("backups", missing()) is None
    assert "not available on this master" in console.backups_page.table.notice.text()

    async def unknown_id():
        raise ClientError("no backup b1", status=404, code="not_found")

    with pytest.raises(ClientError):  # an unknown id is a real error, not a missing feature
        await console.backups.guarded("backups", unknown_id())

    async def fine():
        return [1]

    assert await alerts.guarded("alerts", fine()) == [1]
    assert notice.isHidden()


async def test_rejected_upload_reaches_the_user(console, shared_master, tmp_path):
    assert await console.login_with(_login(shared_master.url))
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    results: list[tuple[str, bool, str]] = []
    console.uploads.finished.connect(lambda *a: results.append(a))
    assert await console.uploads.upload([str(bad)]) == 0
    assert results and results[-1][0] == "broken.zip" and results[-1][1] is False
    assert "uploading broken.zip failed" in message.bridge().history[-1][1]
    ok = build_package(tmp_path, name="uitest")
    assert await console.uploads.upload([str(ok)]) == 1
    await until(lambda: any(r["name"] == "uitest" for r in console.fleet.packages.rows()))


async def test_window_state_and_page_are_remembered(settings, tmp_path):
    first = ConsoleApp(settings, data_dir=tmp_path / "e")
    first.window.resize(640, 480)
    first.window.show()
    first.window.resize(first.window.width() + 37, first.window.height() + 11)
    size = first.window.size()
    first.window.set_connected("http://x", "admin", "admin")
    first.window.show_page("instances")
    first.window.save_state()
    first.window.close()
    second = ConsoleApp(settings, data_dir=tmp_path / "e")
    assert isinstance(settings.value("window/geometry"), QByteArray)
    second.window.show()
    assert second.window.size().height() == size.height()  # (the offscreen screen clamps widths)
    second.window.set_connected("http://x", "admin", "admin")
    assert second.window.current_page() == "instances"
    second.window.close()


async def test_instance_actions_follow_the_selection(settings, tmp_path):
    app = ConsoleApp(settings, data_dir=tmp_path / "e", tick_ms=0)
    page = app.instances_page
    assert not page.start_action.isEnabled() and page.adopt_action.isEnabled()
    app.fleet.instances.set_rows([{"id": "i1", "name": "web-1", "state": "stopped"}])
    page.table.select_key("i1")
    assert page.start_action.isEnabled() and page.destroy_action.isEnabled()
    assert page.table.selected_rows()[0]["name"] == "web-1"
    await app.shutdown()


async def test_overview_counts_from_the_models(settings, tmp_path):
    app = ConsoleApp(settings, data_dir=tmp_path / "e", tick_ms=0)
    app.fleet.nodes.set_rows(
        [
            {"id": "n1", "hostname": "a", "status": "online"},
            {"id": "n2", "hostname": "b", "status": "offline"},
        ]
    )
    app.fleet.instances.set_rows(
        [
            {"id": "i1", "name": "x", "state": "running"},
            {"id": "i2", "name": "y", "state": "failed", "last_error": "exit 3"},
        ]
    )
    app.alerts.alerts.set_rows([{"id": "a1", "state": "firing", "rule_name": "cpu", "target": "x"}])
    app.overview.refresh()
    assert app.overview.node_card.value.text() == "1 / 2"
    assert app.overview.instance_card.value.text() == "1 running"
    assert app.overview.alert_card.value.text() == "1"
    problems = [app.overview.problems.item(i).text() for i in range(app.overview.problems.count())]
    assert "node b is offline" in problems and "instance y is failed: exit 3" in problems


def test_form_parsing_rejects_bad_input_in_words():
    assert parse_labels("zone=a, rack = 3") == {"zone": "a", "rack": "3"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_labels("zone")
    assert parse_env("A=1\n# comment\nB=x=y") == {"A": "1", "B": "x=y"}
    with pytest.raises(ValueError, match="NAME=value"):
        parse_env("JUSTANAME")
    dlg = ModuleDialog({"hello": ["1.0.0", "0.9"]})
    dlg.name.setText("web")
    dlg.args.setText("--port 'unterminated")
    with pytest.raises(ValueError, match="arguments"):
        dlg.values()
    dlg.args.setText("--port 80")
    assert dlg.values()["args"] == ["--port", "80"] and dlg.values()["version"] is None


def test_command_line(capsys):
    assert main(["--version"]) == 0
    assert "gdos-console" in capsys.readouterr().out
    args = parse_args(["--master", "https://m:8080", "--ca", "/ca.pem", "--embedded"])
    assert args.master == "https://m:8080" and args.ca == "/ca.pem" and args.embedded


async def test_a_new_log_in_keeps_the_live_subscriptions(console, shared_master):
    """Charts, the table's live columns and followed logs subscribe through the session: a new
    stream (a new log-in, another local master) starts with all of them, not with none."""
    assert await console.login_with(_login(shared_master.url))
    await console.session.subscribe(["metrics:i-1", "log:i-1:stdout"])
    first = console.session.stream
    assert first is not None and {"metrics:i-1", "log:i-1:stdout"} <= first.keys
    assert await console.login_with(_login(shared_master.url))
    second = console.session.stream
    assert second is not None and second is not first
    assert {"metrics:i-1", "log:i-1:stdout"} <= second.keys
    await console.session.unsubscribe(["log:i-1:stdout"])
    assert "log:i-1:stdout" not in console.session.keys and "log:i-1:stdout" not in second.keys
    await console.session.logout()  # logging out on purpose forgets them
    assert console.session.keys == set()


async def test_the_masters_page_lists_this_master_marked_and_the_status_bar_names_it(
    console, shared_master
):
    assert await console.login_with(_login(shared_master.url))
    master_id = (shared_master.data_dir / "master-id").read_text().strip()
    console.window.show_page("masters")
    model = console.masters.model
    await until(lambda: model.rowCount() == 1, what="the master listed")
    cell = {
        model.headerData(c, Qt.Orientation.Horizontal): model.index(0, c).data(DISPLAY)
        for c in range(model.columnCount())
    }
    assert model.index(0, 0).data(KEY_ROLE) == master_id
    assert cell["URL"] == shared_master.url and cell["Status"] == "online"
    assert cell["Console"] == "this console" and cell["Nodes"] == "0"
    assert f"{shared_master.url} (master {master_id})" in console.window.conn_label.text()
    assert master_id in console.window.windowTitle()
    hint = console.masters_page.hint.text()
    assert "one master URL" in hint


async def test_a_login_goes_past_a_dead_url_and_a_move_comes_round_to_the_live_one(
    console, shared_master
):
    session = console.session
    dead = f"http://127.0.0.1:{free_port()}"
    assert await console.login_with(_login(f"{dead},{shared_master.url}"))
    assert session.urls == [dead, shared_master.url]
    assert session.client is not None and session.client.base_url == shared_master.url
    await until(lambda: session.reachable and console.masters.model.rowCount(), what="loaded")
    await session.subscribe(["metrics:some-node"])
    await settled()
    token = session.client.token
    moves: list[tuple[str, str, str]] = []
    session.failover.moved.connect(lambda *a: moves.append(a))

    # Its master "stops answering": the dead URL is tried first, then round to the live one.
    message.bridge().history.clear()
    session.failover.start("a test")
    await until(lambda: moves, what="moved")
    assert moves[0][:2] == (shared_master.url, shared_master.url)
    assert session.client.token == token  # the same log-in, no password asked
    assert session.stream is not None and "metrics:some-node" in session.stream.keys
    console.masters.model.set_rows([])
    await until(lambda: session.reachable and console.masters.model.rowCount(), what="reloaded")
    assert any("moved to master" in text for _, text in message.bridge().history)
    assert "one master URL" not in console.masters_page.hint.text()


async def test_a_refused_token_asks_for_a_new_login(console, shared_master):
    assert await console.login_with(_login(shared_master.url))
    session = console.session
    other = shared_master.url.replace("127.0.0.1", "localhost")
    session.urls = [shared_master.url, other]
    assert session.client is not None
    session.client.token = "user_not-a-token"
    session.failover.start("a test")
    dialog = await until(lambda: console._login_dialog, what="the log-in dialog")
    assert isinstance(dialog, LoginDialog) and "log in again" in dialog.problem.text()
    assert not session.connected
    assert dialog.url.text() == f"{shared_master.url},{other}"
    dialog.reject()
