"""Resumable uploads over tus 1.0: the protocol, cuts and restarts half way, flat memory."""

import json
import os
import socket
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests import tus
from tests.support import Api, Master, wait_for

pytestmark = pytest.mark.slow

BIG = 200 << 20
LIMIT = 250 << 20  # --max-package-size of these masters


def write_big_package(path: Path, size: int, name: str = "big", version: str = "1.0") -> Path:
    """A valid package of about `size` bytes: random data stored uncompressed (no zip-bomb ratio,
    nothing for the master to inflate), written in pieces so the test never holds it."""
    manifest = {"name": name, "version": version, "entrypoint": "bin/run"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("service.json", json.dumps(manifest))
        zf.writestr(
            "bin/run", f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(60)'\n"
        )
        info = zipfile.ZipInfo("data/blob.bin")
        with zf.open(info, "w", force_zip64=True) as out:
            left = size
            while left > 0:
                n = min(8 << 20, left)
                out.write(os.urandom(n))
                left -= n
    return path


@pytest.fixture(scope="module")
def big_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_big_package(tmp_path_factory.mktemp("big") / "big-1.0.zip", BIG)


@pytest.fixture(scope="module")
def tus_master(tmp_path_factory: pytest.TempPathFactory):
    m = Master(tmp_path_factory.mktemp("tus") / "master", extra=["--max-package-size", str(LIMIT)])
    m.launch()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def tapi(tus_master):
    client = tus_master.api()
    yield client
    client.close()


def leftovers(master: Master) -> list[Path]:
    return [p for p in (master.data_dir / "uploads").rglob("*") if p.is_file()]


def partial_files(master: Master) -> list[Path]:
    return list((master.data_dir / "uploads" / ".incoming").rglob("*.part"))


class RssPeak:
    """Samples a process's RSS in a thread; `growth` is the peak over the first sample."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


# -- the protocol ------------------------------------------------------------------------------


def test_options_create_head_and_headers(tapi):
    r = tapi.client.options("/api/v1/packages/uploads")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert "creation" in r.headers["Tus-Extension"].split(",")
    assert int(r.headers["Tus-Max-Size"]) == LIMIT
    assert r.headers["Tus-Resumable"] == "1.0.0"

    r = tus.create(tapi, 1234, **{"Upload-Metadata": tus.metadata(filename="a.zip", note="é")})
    assert r.headers["Tus-Resumable"] == "1.0.0"
    location = r.headers["Location"]
    assert location.startswith("http://") and "/api/v1/packages/uploads/" in location
    assert r.json()["metadata"] == {"filename": "a.zip", "note": "é"}

    h = tus.head(tapi, location)
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == "0"
    assert h.headers["Upload-Length"] == "1234"
    assert h.headers["Cache-Control"] == "no-store"
    assert h.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in h.headers
    assert h.headers["Upload-Metadata"] == tus.metadata(filename="a.zip", note="é")
    listed = {u["id"]: u for u in tapi.get("/packages/uploads")}
    assert listed[location.rsplit("/", 1)[1]]["state"] == "receiving"
    assert tapi.client.delete(location, headers=tus.TUS).status_code == 204


def test_protocol_errors(tapi):
    location = tus.create(tapi, 100).headers["Location"]

    r = tapi.client.head(location, headers={"Tus-Resumable": "0.2.2"})
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    r = tapi.client.post("/api/v1/packages/uploads", headers={"Upload-Length": "5"})
    assert r.status_code == 412 and r.json()["error"]["code"] == "precondition_failed"

    r = tus.patch(tapi, location, 0, b"abc", **{"Content-Type": "application/zip"})
    assert r.status_code == 415 and r.headers["Tus-Resumable"] == "1.0.0"

    r = tus.patch(tapi, location, 7, b"abc")
    assert r.status_code == 409 and r.json()["error"]["details"]["offset"] == 0
    assert "HEAD" in r.json()["error"]["message"]

    r = tus.patch(tapi, location, 0, b"x" * 101)
    assert r.status_code == 413
    r = tapi.client.patch(
        location,
        headers={**tus.TUS, "Content-Type": tus.OCTETS, "Upload-Offset": "-1"},
        content=b"a",
    )
    assert r.status_code == 422  # Upload-Offset is declared as an integer >= 0
    assert tus.offset(tapi, location) == 0, "refused PATCHes must not move the offset"

    for headers in ({}, {"Upload-Length": "abc"}, {"Upload-Length": "-3"}):
        r = tapi.client.post("/api/v1/packages/uploads", headers={**tus.TUS, **headers})
        assert r.status_code == 400, (headers, r.text)
    r = tus.create(tapi, 10, expect=400, **{"Upload-Metadata": "name !!notbase64"})
    assert "Upload-Metadata" in r.json()["error"]["message"]
    r = tus.create(tapi, LIMIT + 1, expect=413)
    assert "limit" in r.json()["error"]["message"]
    r = tus.create(tapi, 0, expect=422)

    unknown = location.rsplit("/", 1)[0] + "/0123456789abcdef"
    assert tus.head(tapi, unknown).status_code == 404
    assert tus.patch(tapi, unknown, 0, b"a").status_code == 404
    assert tapi.client.get(unknown).status_code == 404

    r = tapi.client.get(location)
    assert r.status_code == 409 and r.json()["error"]["details"] == {"offset": 0, "length": 100}
    tapi.client.delete(location, headers=tus.TUS)


def test_routes_need_credentials_and_roles(tus_master, tapi):
    location = tus.create(tapi, 50).headers["Location"]
    anon = httpx.Client(base_url=tus_master.url)
    assert anon.options("/api/v1/packages/uploads").status_code == 401
    assert (
        anon.post("/api/v1/packages/uploads", headers={**tus.TUS, "Upload-Length": "5"}).status_code
        == 401
    )
    assert anon.head(location, headers=tus.TUS).status_code == 401
    assert (
        anon.patch(
            location,
            headers={**tus.TUS, "Upload-Offset": "0", "Content-Type": tus.OCTETS},
            content=b"a",
        ).status_code
        == 401
    )
    assert anon.get(location).status_code == 401

    tapi.post("/users", {"username": "watcher", "password": "watcher-pw-1", "role": "viewer"})
    viewer = Api.login(tus_master.url, "watcher", "watcher-pw-1")
    assert tus.head(viewer, location).status_code == 200
    assert viewer.client.options("/api/v1/packages/uploads").status_code == 204
    assert viewer.client.get("/api/v1/packages/uploads").status_code == 200
    assert (
        viewer.client.post(
            "/api/v1/packages/uploads", headers={**tus.TUS, "Upload-Length": "5"}
        ).status_code
        == 403
    )
    assert tus.patch(viewer, location, 0, b"a").status_code == 403
    assert viewer.client.delete(location, headers=tus.TUS).status_code == 403
    assert tus.offset(tapi, location) == 0
    tapi.client.delete(location, headers=tus.TUS)


def test_openapi_lists_the_upload_routes(tus_master):
    doc = httpx.get(tus_master.url + "/openapi.json").json()
    coll = doc["paths"]["/api/v1/packages/uploads"]
    item = doc["paths"]["/api/v1/packages/uploads/{upload_id}"]
    assert {"post", "get", "options"} <= set(coll)
    assert {"head", "patch", "get", "delete"} <= set(item)
    assert "application/offset+octet-stream" in item["patch"]["requestBody"]["content"]


def test_small_upload_in_chunks_then_delete_frees_space(tus_master, tapi, tmp_path):
    data = tmp_path / "small.zip"
    write_big_package(data, 3 << 20, name="chunky")
    location, last = tus.upload(tapi, data, chunk=1 << 20)
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(data.stat().st_size)
    pkg = tapi.client.get(location).json()
    assert pkg["name"] == "chunky" and pkg["sha256"] == tus.sha256_of(data)
    # A retried last PATCH (its answer lost) is harmless.
    assert tus.patch(tapi, location, data.stat().st_size, b"").status_code == 204

    abandoned = tus.create(tapi, 10 << 20).headers["Location"]
    assert tus.patch_file(tapi, abandoned, data, 0, 1 << 20).status_code == 204
    assert partial_files(tus_master)
    assert tapi.client.delete(abandoned, headers=tus.TUS).status_code == 204
    assert partial_files(tus_master) == []
    assert tus.head(tapi, abandoned).status_code == 404


def test_second_patch_while_one_streams_is_409_then_resume_works(tapi, tmp_path):
    """One writer per upload: a PATCH stalled mid-body holds it; a second one is told it is busy
    (409) instead of interleaving bytes; once the first connection drops, HEAD and resume work."""
    data = tmp_path / "p.bin"
    write_big_package(data, 6 << 20, name="busy")
    size = data.stat().st_size
    location = tus.create(tapi, size).headers["Location"]
    url = urlsplit(location)
    stalled = socket.create_connection((url.hostname, url.port))
    stalled.sendall(
        (
            f"PATCH {url.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tapi.token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: {tus.OCTETS}\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        + data.read_bytes()[: 3 << 20]  # more than one batch of the writer: it reaches the disk
    )
    wait_for(lambda: tus.head(tapi, location).headers["Upload-Offset"] != "0", what="bytes in")
    r = tus.patch_file(tapi, location, data, 0, size)
    assert r.status_code == 409, r.text
    assert "busy" in r.json()["error"]["message"]
    stalled.close()
    last = tus.send_rest(tapi, location, data)
    assert last.status_code == 204, last.text
    assert tapi.client.get(location).json()["sha256"] == tus.sha256_of(data)


# -- cuts and restarts ----------------------------------------------------------------------


def test_200mb_cut_half_way_resumes_from_head(tus_master, tapi, big_zip):
    size = big_zip.stat().st_size
    location = tus.create(tapi, size).headers["Location"]
    rss = RssPeak(tus_master.pid)
    tus.cut_patch(tapi, location, big_zip, 0, declared=size, send=size // 2)
    at = tus.offset(tapi, location)
    assert 0 < at <= size // 2, at
    assert (
        (wait_for(lambda: partial_files(tus_master), what="partial file")[0]).stat().st_size == at
    )

    last = tus.send_rest(tapi, location, big_zip)
    assert last.status_code == 204, last.text
    growth = rss.growth
    pkg = tapi.client.get(location).json()
    assert pkg["sha256"] == tus.sha256_of(big_zip) and pkg["size"] == size
    print(
        f"\nmaster RSS {rss.base >> 20} MB, growth over a {size >> 20} MB upload: {growth / 2**20:.1f} MB"
    )
    assert growth < 96 << 20, "the master held the body in memory"
    assert partial_files(tus_master) == []
    tapi.request("DELETE", f"/packages/{pkg['id']}", expect=204)


def test_200mb_cut_then_master_restart_then_resume(tus_master, big_zip):
    """Crashes (SIGKILL) and relaunches the module's master between the halves."""
    m = tus_master
    api = m.api()
    size = big_zip.stat().st_size
    location = tus.create(api, size).headers["Location"]
    tus.cut_patch(api, location, big_zip, 0, declared=size, send=size // 2)
    at = wait_for(lambda: tus.offset(api, location) >= size // 4 and tus.offset(api, location))
    time.sleep(0.3)
    at = tus.offset(api, location)  # settled

    m.kill9()
    m.launch()
    api = m.api()
    assert tus.offset(api, location) == at, "the bytes that arrived survive a master crash"
    last = tus.send_rest(api, location, big_zip, chunk=48 << 20)
    assert last.status_code == 204, last.text
    pkg = api.client.get(location).json()
    assert pkg["sha256"] == tus.sha256_of(big_zip)
    assert partial_files(m) == []


def test_abandoned_uploads_expire_and_are_cleaned_up(master_factory, tmp_path):
    m = master_factory("ttl", extra=["--upload-ttl", "3"])
    api = m.api()
    data = tmp_path / "some.bin"
    data.write_bytes(os.urandom(300_000))
    started = tus.create(api, 1 << 20).headers["Location"]
    assert tus.patch_file(api, started, data, 0, 300_000).status_code == 204
    empty = tus.create(api, 1000).headers["Location"]
    incoming = m.data_dir / "uploads" / ".incoming"
    orphan = incoming / "tus" / "feedfeedfeedfeed.part"  # a partial file with no upload row
    orphan.write_bytes(b"x")
    stale = incoming / "upload-0123456789abcdef.part"  # a one-shot upload a crash left behind
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert len(partial_files(m)) == 4

    wait_for(lambda: partial_files(m) == [], timeout=30, what="cleanup")
    for location in (started, empty):
        assert tus.head(api, location).status_code == 404
        assert tus.patch(api, location, 0, b"x").status_code == 404
    assert all(u["state"] != "receiving" for u in api.get("/packages/uploads"))
