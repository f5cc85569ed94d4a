"""API credentials verified a moment ago are taken from memory: no database read per request
(a removed user or node is refused at once all the same: tests/master/test_api_auth.py)."""

from pathlib import Path
from typing import Any

from sqlalchemy import event

from master.services.token_cache import REFRESH_SHARE, TTL, TokenCache
from tests.master.inprocess import make_app, running, services_of
from tests.support import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_its_ttl_and_forget_all_drops_every_one() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(ttl=2.0, clock=clock)
    cache.put("a", "alice")
    cache.put("b", "bob")
    clock.now += 1.9
    assert cache.get("a") == "alice"
    clock.now += 0.2
    assert cache.get("a") is None
    cache.put("a", "alice")
    cache.forget_all()
    assert cache.get("a") is None and cache.get("b") is None


def test_a_disabled_cache_keeps_nothing() -> None:
    cache: TokenCache[str] = TokenCache(enabled=False)
    cache.put("a", "alice")
    assert cache.get("a") is None


def test_repeated_requests_with_one_token_read_it_from_the_database_once(tmp_path: Path) -> None:
    app = make_app(tmp_path / "m")
    with running(app) as (client, auth):
        svc = services_of(app)
        svc.principals.ttl = 3600.0  # this test is about the reads, not the clock
        reads: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if "FROM api_tokens" in statement:
                reads.append(statement)

        event.listen(svc.db.engine, "before_cursor_execute", seen)
        try:
            for _ in range(5):
                assert client.get("/api/v1/nodes", headers=auth).status_code == 200
                assert client.get("/api/v1/systems", headers=auth).status_code == 200
        finally:
            event.remove(svc.db.engine, "before_cursor_execute", seen)
        assert len(reads) == 1
        bad = client.get("/api/v1/nodes", headers={"Authorization": "Bearer gdu_forged"})
        assert bad.status_code == 401


def test_an_entry_is_due_once_past_its_refresh_point_and_a_late_answer_is_dropped() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(ttl=2.0, clock=clock)
    cache.put("a", "alice")
    assert not cache.due("a") and not cache.due("unknown")
    clock.now += 2.0 * REFRESH_SHARE
    assert cache.due("a") and not cache.due("a")  # one verification at a time
    cache.verified_ahead("a", "alice")
    clock.now += 1.5  # past the first verification's TTL, not the second's
    assert cache.get("a") == "alice"
    assert cache.due("a")
    cache.verified_ahead("a", None)  # no longer valid
    assert cache.get("a") is None
    cache.put("b", "bob")
    clock.now += 2.0 * REFRESH_SHARE
    assert cache.due("b")
    cache.forget_all()  # a removal while the verification ran: its answer may predate it
    cache.verified_ahead("b", "bob")
    assert cache.get("b") is None


def test_a_polled_token_is_verified_again_before_its_entry_expires(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A poller's request past the entry's refresh point is answered from the cache and
    verifies the token in the background, so the request after the old entry's expiry takes
    no worker thread (a trip of four loop turns) to read it."""
    import anyio.to_thread

    app = make_app(tmp_path / "m")
    with running(app) as (client, auth):
        cache = services_of(app).principals
        clock = Clock()
        cache.clock = clock
        cache.forget_all()
        token = auth["Authorization"].split()[1]
        assert client.get("/api/v1/nodes", headers=auth).status_code == 200  # read, cached
        trips: list[object] = []
        run_sync = anyio.to_thread.run_sync

        async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
            trips.append(func)
            return await run_sync(func, *args, **kwargs)

        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        clock.now += TTL * REFRESH_SHARE + 0.1
        assert client.get("/api/v1/nodes", headers=auth).status_code == 200
        wait_for(lambda: token not in cache._refreshing, 30, what="the verification ahead")
        clock.now += TTL * (1 - REFRESH_SHARE)  # the first entry's expiry has passed
        assert client.get("/api/v1/nodes", headers=auth).status_code == 200
        assert trips == []
