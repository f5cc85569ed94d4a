"""`GET /nodes` on a real master: pollers share one built listing, with an entity tag for 304s,
and every change the master makes to a node shows in the very next listing."""

import httpx

from protocol.messages import HostInfo


def enroll(url: str, join_token: str, hostname: str) -> str:
    host = HostInfo(hostname=hostname).to_dict()
    r = httpx.post(url + "/api/v1/agent/enroll", json={"join_token": join_token, "host": host})
    assert r.status_code == 201, r.text
    node_id: str = r.json()["node_id"]
    return node_id


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
