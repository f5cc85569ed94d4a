"""Several master URLs: the list, the order they are tried in, which failures leave a master, and
what a request whose answer was lost says (the Masters page and the moves: test_ui.py,
test_failover.py)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from console.client.errors import transport_error
from console.client.masters import BACKOFF_MAX, after, backoff, is_gone, split_urls
from console.ui.dialogs import LoginDialog

A, B, C = "http://a:8080", "http://b:8080", "https://c:8443"


SPLIT = [
    (A, [A]),
    (f"{A}/", [A]),
    (f" {A} , {B}/,{C}", [A, B, C]),
    (f"{A},,{B},{A}", [A, B]),
]
NOT_URLS = ["", " , ", "a:8080", f"{A},ftp://b", "http://"]
AFTER = [(A, [B, C, A]), (B, [C, A, B]), (C, [A, B, C]), ("http://gone:1", [A, B, C])]


def test_split_urls():
    for text, urls in SPLIT:
        assert split_urls(text) == urls, text
    for text in NOT_URLS:
        with pytest.raises(ValueError, match="URL"):
            split_urls(text)


def test_after_a_loss_the_next_ones_are_tried_round_the_list():
    for current, order in AFTER:
        assert after([A, B, C], current) == order, current


def test_backoff_is_jittered_and_bounded():
    assert all(0 <= backoff(0) <= 0.5 for _ in range(50))
    assert all(0 <= backoff(20) <= BACKOFF_MAX for _ in range(50))
    assert len({backoff(3) for _ in range(20)}) > 1


REQUEST = httpx.Request("POST", f"{A}/api/v1/users")


GONE = [
    (httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST), True),
    (httpx.RemoteProtocolError("Server disconnected", request=REQUEST), True),
    (httpx.ReadError("Connection reset by peer", request=REQUEST), True),
    (httpx.ReadTimeout("timed out", request=REQUEST), False),
    (httpx.ConnectTimeout("timed out", request=REQUEST), False),
    (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=REQUEST), False),
]


def test_which_failures_mean_the_master_is_gone():
    for exc, gone in GONE:
        assert is_gone(exc) is gone, exc
    tls = httpx.ConnectError("handshake failed", request=REQUEST)
    tls.__cause__ = ssl.SSLError("bad handshake")
    assert not is_gone(tls)


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
