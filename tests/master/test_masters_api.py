"""`GET /api/v1/masters` of a master on SQLite: alone, online, the leader, its id kept."""

from __future__ import annotations

from pathlib import Path

from tests.master.inprocess import make_app, running


def test_a_master_on_sqlite_lists_itself_online(tmp_path: Path) -> None:
    app = make_app(tmp_path, advertise_url="http://here.example:8080/")
    with running(app) as (client, auth):
        listed = client.get("/api/v1/masters", headers=auth).json()
        assert client.get("/api/v1/masters").status_code == 401
    mid = (tmp_path / "master-id").read_text().strip()
    assert [(m["id"], m["url"], m["status"], m["leader"], m["nodes"]) for m in listed] == [
        (mid, "http://here.example:8080", "online", True, 0)
    ]
    assert listed[0]["started_at"] and listed[0]["last_seen"]
    with running(make_app(tmp_path)) as (client, auth):  # restarted: the same master
        again = client.get("/api/v1/masters", headers=auth).json()
    assert [m["id"] for m in again] == [mid]
