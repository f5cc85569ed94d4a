"""`GET /nodes` on a real master: pollers share one built listing, with an entity tag for 304s,
and every change the master makes to a node shows in the very next listing."""

import threading
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from master.services import nodes as nodes_service
from protocol.messages import HostInfo
from tests.master.inprocess import make_app, running, services_of
from tests.support import wait_for


def enroll(url: str, join_token: str, hostname: str) -> str:
    host = HostInfo(hostname=hostname).to_dict()
    r = httpx.post(url + "/api/v1/agent/enroll", json={"join_token": join_token, "host": host})
    assert r.status_code == 201, r.text
    node_id: str = r.json()["node_id"]
    return node_id


def listed_then_renamed(
    app: FastAPI, client: TestClient, auth: dict[str, str], data_dir: Path
) -> httpx.Response:
    """One node enrolled and listed (the listing is returned), then renamed in the database
    behind the master's back, as another master would."""
    join = (data_dir / "join-token").read_text().strip()
    host = HostInfo(hostname="aging-host").to_dict()
    enrolled = client.post("/api/v1/agent/enroll", json={"join_token": join, "host": host})
    assert enrolled.status_code == 201, enrolled.text
    first = client.get("/api/v1/nodes", headers=auth)
    assert [n["hostname"] for n in first.json()] == ["aging-host"]
    with services_of(app).db.engine.begin() as conn:
        conn.execute(text("UPDATE nodes SET hostname = 'renamed-host'"))
    return first


def test_listing_answers_304_to_its_own_tag(shared_master, shared_api):
    enroll(shared_master.url, shared_master.join_token, "etag-host")
    first = shared_api.request("GET", "/nodes", expect=200)
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    # The tag is the body's digest: a rebuilt listing of the same nodes has the same tag.
    again = shared_api.request("GET", "/nodes", headers={"If-None-Match": f'"x", W/{tag}'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    other = shared_api.request("GET", "/nodes", headers={"If-None-Match": '"not-it"'})
    assert other.status_code == 200 and other.json() == first.json()


def test_changes_show_in_the_next_listing(shared_master, shared_api):
    before = shared_api.request("GET", "/nodes", expect=200)
    node_id = enroll(shared_master.url, shared_master.join_token, "fresh-host")
    listed = shared_api.request("GET", "/nodes", headers={"If-None-Match": before.headers["etag"]})
    assert listed.status_code == 200
    assert listed.headers["etag"] != before.headers["etag"]
    assert node_id in [n["id"] for n in listed.json()]

    shared_api.request("PATCH", f"/nodes/{node_id}", json={"labels": {"rack": "r7"}}, expect=200)
    node = next(n for n in shared_api.get("/nodes") if n["id"] == node_id)
    assert node["labels"] == {"rack": "r7"} and node["status"] == "offline"

    shared_api.request("DELETE", f"/nodes/{node_id}", expect=204)
    assert node_id not in [n["id"] for n in shared_api.get("/nodes")]


def test_a_listing_near_its_age_limit_is_answered_while_the_next_is_built(tmp_path, monkeypatch):
    """Pollers never wait for a build that only the listing's age asked for: past
    `LISTING_REFRESH_AFTER` the built listing is still answered and its successor is built in a
    worker thread, which a later poll gets (what changed without this master: another master's
    writes, a node's load)."""
    monkeypatch.setattr(nodes_service, "LISTING_MAX_AGE", 3600.0)  # age alone never expires it
    app = make_app(tmp_path)
    with running(app) as (client, auth):
        first = listed_then_renamed(app, client, auth, tmp_path)
        nodes = services_of(app).nodes
        assert client.get("/api/v1/nodes", headers=auth).content == first.content  # current

        built = nodes.cached()
        assert built is not None
        built.built -= nodes_service.LISTING_REFRESH_AFTER + 1
        aged = client.get("/api/v1/nodes", headers=auth)
        assert aged.content == first.content and aged.headers["etag"] == first.headers["etag"]

        def renamed() -> bool:
            body = client.get("/api/v1/nodes", headers=auth).json()
            return [n["hostname"] for n in body] == ["renamed-host"]

        wait_for(renamed, 30, what="the listing built ahead")
        assert nodes.cached() is not built


def test_a_current_listing_is_answered_without_a_worker_thread(tmp_path, monkeypatch):
    """A poll of a built listing runs on the event loop from end to end: a trip through a
    worker thread (a plain function dependency, app-wide or per route) costs about four loop
    turns, and when the loop is busy (a fan-out, a reconnect storm) every turn is long."""
    import anyio.to_thread

    app = make_app(tmp_path)
    with running(app) as (client, auth):
        assert client.get("/api/v1/nodes", headers=auth).status_code == 200  # built, cached
        assert services_of(app).nodes.cached() is not None
        trips: list[object] = []
        run_sync = anyio.to_thread.run_sync

        async def counted(func, *args, **kwargs):
            trips.append(func)
            return await run_sync(func, *args, **kwargs)

        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        assert client.get("/api/v1/nodes", headers=auth).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert trips == []


def test_an_aged_listing_is_answered_while_its_successor_is_still_being_built(
    tmp_path, monkeypatch
):
    """Past its age limit a listing is still answered while the build `refresh_ahead` began is
    running (a loaded machine can take longer than the quarter second left); the poller does
    not queue behind that build."""
    app = make_app(tmp_path)
    with running(app) as (client, auth):
        first = listed_then_renamed(app, client, auth, tmp_path)
        nodes = services_of(app).nodes
        gate = threading.Event()
        build = nodes.listing_json

        def held_build() -> bytes:
            gate.wait(60)
            return build()

        monkeypatch.setattr(nodes, "listing_json", held_build)
        opener = threading.Timer(20, gate.set)  # never a hang, whatever the route does
        opener.start()
        try:
            built = nodes.cached()
            assert built is not None
            built.built -= nodes_service.LISTING_REFRESH_AFTER + 0.01  # due for a build ahead
            assert client.get("/api/v1/nodes", headers=auth).content == first.content
            built.built -= nodes_service.LISTING_MAX_AGE  # past its age, the build still held
            aged = client.get("/api/v1/nodes", headers=auth)
            assert aged.content == first.content  # without waiting: not the renamed host yet
        finally:
            gate.set()
            opener.cancel()

        def renamed() -> bool:
            body = client.get("/api/v1/nodes", headers=auth).json()
            return [n["hostname"] for n in body] == ["renamed-host"]

        wait_for(renamed, 30, what="the listing built ahead")
