"""Password guessing is slowed down per source, and answers never tell whether a user exists."""

import time

import httpx

from master.db.session import Database
from master.services import accounts, security
from master.services.throttle import LoginThrottle
from tests.support import ADMIN_PASSWORD


def login(url: str, user: str, password: str) -> httpx.Response:
    return httpx.post(
        url + "/api/v1/auth/login", json={"username": user, "password": password}, timeout=30
    )


def test_repeated_failures_lock_the_source_out(master):
    for _ in range(5):
        assert login(master.url, "admin", "guess").status_code == 401
    r = login(master.url, "admin", ADMIN_PASSWORD)
    assert r.status_code == 429, "even the right password waits out the lockout"
    assert int(r.headers["Retry-After"]) >= 1
    assert "too many failed logins" in r.json()["error"]["message"]
    time.sleep(float(r.json()["error"]["details"]["retry_after"]) + 0.2)
    assert login(master.url, "admin", ADMIN_PASSWORD).status_code == 200


def test_lockout_grows_and_is_bounded():
    t = LoginThrottle(free_failures=2, max_lockout=8, max_sources=3)
    t.failed("a", now=0)
    assert t.retry_after("a", now=0) == 0
    t.failed("a", now=0)
    assert t.retry_after("a", now=0) == 1
    for _ in range(10):
        t.failed("a", now=0)
    assert t.retry_after("a", now=0) == 8
    t.succeeded("a")
    assert t.retry_after("a", now=0) == 0
    for src in "bcde":
        t.failed(src, now=0)
    assert len(t._records) == 3  # the oldest source was forgotten


def test_failures_outside_the_window_start_over():
    t = LoginThrottle(free_failures=1, window=10)
    t.failed("a", now=0)
    t.failed("a", now=100)
    assert t.retry_after("a", now=100) == 1  # first failure of a new window: 2**0


def test_unknown_and_known_users_cost_the_same(tmp_path, monkeypatch):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.migrate()
    calls: list[str] = []
    real = security.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(accounts, "verify_password", counting)
    with db.session() as s:
        s.add(
            accounts.models.User(
                username="known", password_hash=security.hash_password("pw-123456"), role="viewer"
            )
        )
        s.commit()
        assert accounts.login(s, "known", "wrong", 60) is None
        assert accounts.login(s, "nobody", "wrong", 60) is None
    assert len(calls) == 2, "both paths run exactly one scrypt verification"
    assert calls[1] == security.dummy_hash()
