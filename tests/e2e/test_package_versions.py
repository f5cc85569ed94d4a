"""Package versions: name+version unique, listed newest first by name, `version: null` means
the newest, and a version in use cannot be deleted."""

import pytest

from tests.support import build_package

pytestmark = pytest.mark.slow


def test_versions_listed_newest_first_and_deletion_follows_use(shared_api, tmp_path):
    api = shared_api
    ids = {}
    for name, version in (
        ("ver", "1.0"),
        ("zzz", "1"),
        ("ver", "1.10"),
        ("ver", "2.0"),
        ("aaa", "3"),
    ):
        pkg = build_package(tmp_path / f"{name}{version}", name=name, version=version)
        ids[(name, version)] = api.upload(pkg).json()["id"]
    r = api.upload(build_package(tmp_path / "again", name="ver", version="1.10"), expect=409)
    assert r.json()["error"]["details"]["package_id"] == ids[("ver", "1.10")]

    listed = [(p["name"], p["version"]) for p in api.get("/packages")]
    mine = [x for x in listed if x[0] in ("ver", "zzz", "aaa")]
    assert mine == [("aaa", "3"), ("ver", "2.0"), ("ver", "1.10"), ("ver", "1.0"), ("zzz", "1")]
    assert [p["version"] for p in api.get("/packages", params={"name": "ver"})] == [
        "2.0",
        "1.10",
        "1.0",
    ]
    assert api.get("/packages", params={"name": "nothing-such"}) == []

    system = api.post("/systems", {"name": "versions"})
    newest = api.post(f"/systems/{system['id']}/modules", {"name": "latest", "package": "ver"})
    pinned = api.post(
        f"/systems/{system['id']}/modules", {"name": "pinned", "package": "ver", "version": "1.10"}
    )
    r = api.request(
        "POST",
        f"/systems/{system['id']}/modules",
        json={"name": "x", "package": "ver", "version": "9"},
    )
    assert r.status_code == 404

    def delete(version: str):
        return api.request("DELETE", f"/packages/{ids[('ver', version)]}")

    r = delete("2.0")  # the newest: what `version: null` deploys
    assert r.status_code == 409 and newest["id"] in r.json()["error"]["details"]["modules"]
    r = delete("1.10")  # pinned by a module
    assert r.status_code == 409 and pinned["id"] in r.json()["error"]["details"]["modules"]
    assert delete("1.0").status_code == 204  # used by nobody
    api.request("DELETE", f"/modules/{pinned['id']}", expect=204)
    assert delete("1.10").status_code == 204
    assert [p["version"] for p in api.get("/packages", params={"name": "ver"})] == ["2.0"]
    api.request("DELETE", f"/modules/{newest['id']}", expect=204)
    assert delete("2.0").status_code == 204
