"""Several master URLs: the list, the order they are tried in, which failures leave a master; the
Masters page; a log-in past a dead URL; a move round the list to the master that answers."""

from __future__ import annotations

import ssl

import httpx
import pytest
from PySide6.QtCore import Qt

from console import message
from console.client.errors import transport_error
from console.client.masters import BACKOFF_MAX, after, backoff, is_gone, split_urls
from console.models.cells import DISPLAY, KEY_ROLE
from console.ui.dialogs import LoginDialog
from tests.console.conftest import settled, until
from tests.support import ADMIN_PASSWORD, free_port

A, B, C = "http://a:8080", "http://b:8080", "https://c:8443"


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        (A, [A]),
        (f"{A}/", [A]),
        (f" {A} , {B}/,{C}", [A, B, C]),
        (f"{A},,{B},{A}", [A, B]),
    ],
)
def test_split_urls(text, urls):
    assert split_urls(text) == urls


@pytest.mark.parametrize("text", ["", " , ", "a:8080", f"{A},ftp://b", "http://"])
def test_split_urls_refuses_what_is_not_a_master_url(text):
    with pytest.raises(ValueError, match="URL"):
        split_urls(text)


@pytest.mark.parametrize(
    ("current", "order"),
    [(A, [B, C, A]), (B, [C, A, B]), (C, [A, B, C]), ("http://gone:1", [A, B, C])],
)
def test_after_a_loss_the_next_ones_are_tried_round_the_list(current, order):
    assert after([A, B, C], current) == order


def test_backoff_is_jittered_and_bounded():
    assert all(0 <= backoff(0) <= 0.5 for _ in range(50))
    assert all(0 <= backoff(20) <= BACKOFF_MAX for _ in range(50))
    assert len({backoff(3) for _ in range(20)}) > 1


REQUEST = httpx.Request("POST", f"{A}/api/v1/users")


@pytest.mark.parametrize(
    ("exc", "gone"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST), True),
        (httpx.RemoteProtocolError("Server disconnected", request=REQUEST), True),
        (httpx.ReadError("Connection reset by peer", request=REQUEST), True),
        (httpx.ReadTimeout("timed out", request=REQUEST), False),
        (httpx.ConnectTimeout("timed out", request=REQUEST), False),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=REQUEST), False),
    ],
)
def test_which_failures_mean_the_master_is_gone(exc, gone):
    assert is_gone(exc) is gone


def test_a_change_whose_answer_was_lost_says_it_may_have_been_done():
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST)
    cut = httpx.RemoteProtocolError("Server disconnected", request=REQUEST)
    assert "may have been carried out" not in transport_error(A, refused, "POST").message
    assert "may have been carried out" in transport_error(A, cut, "POST").message
    assert "may have been carried out" not in transport_error(A, cut, "GET").message


def test_the_login_dialog_takes_several_urls(qtbot):
    dlg = LoginDialog(f"{A}, {B}/")
    qtbot.addWidget(dlg)
    dlg.password.setText("pw")
    assert dlg.values()["url"] == f"{A},{B}"
    dlg.url.setText(f"{A},b:8080")
    with pytest.raises(ValueError, match="b:8080"):
        dlg.values()


async def test_the_masters_page_lists_this_master_marked_and_the_status_bar_names_it(
    connected_console, shared_master
):
    console = connected_console
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
    assert cell["Console"] == "this console" and cell["Nodes"] == "1"
    assert f"{shared_master.url} (master {master_id})" in console.window.conn_label.text()
    assert master_id in console.window.windowTitle()
    hint = console.masters_page.hint.text()
    assert "one master URL" in hint


async def test_a_login_goes_past_a_dead_url_and_a_move_comes_round_to_the_live_one(
    connected_console, shared_master, node
):
    console = connected_console
    session = console.session
    dead = f"http://127.0.0.1:{free_port()}"
    assert await console.login_with(
        {
            "url": f"{dead},{shared_master.url}",
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "verify": True,
            "ca": "",
        }
    )
    assert session.urls == [dead, shared_master.url]
    assert session.client is not None and session.client.base_url == shared_master.url
    await until(lambda: session.reachable and console.fleet.nodes.row(node), what="loaded")
    await session.subscribe([f"metrics:{node}"])
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
    assert session.stream is not None and f"metrics:{node}" in session.stream.keys
    await until(lambda: session.reachable and console.fleet.nodes.row(node), what="reloaded")
    assert any("moved to master" in text for _, text in message.bridge().history)
    assert "one master URL" not in console.masters_page.hint.text()


async def test_a_refused_token_asks_for_a_new_login(connected_console, shared_master):
    console = connected_console
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


def test_is_gone_ignores_tls_failures_wrapped_by_httpx():
    exc = httpx.ConnectError("handshake failed", request=REQUEST)
    exc.__cause__ = ssl.SSLError("bad handshake")
    assert not is_gone(exc)
