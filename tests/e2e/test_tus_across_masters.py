"""A tus upload across two real masters on one PostgreSQL database and one S3 bucket (moto's):
half the body to one master and the rest to the other, two PATCHes at once on the two, a hostile
zip, and an abandoned upload whose multipart upload expiry aborts."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from minio import Minio
from sqlalchemy import update

from master.db import models
from master.db.session import Database
from tests import tus
from tests.e2e.test_bad_packages import CASES
from tests.e2e.test_s3_store import KEYS, s3_flags
from tests.e2e.test_tus_upload import write_big_package
from tests.support import Api, Master, Proc, wait_for

pytestmark = pytest.mark.slow

BUCKET = "across"
MiB = 1 << 20
TTL = 30  # seconds an untouched upload lives (expiry looks every tenth of it)


class Pair:
    def __init__(self, a: Master, b: Master, flags: list[str], db_url: str) -> None:
        self.a, self.b = a, b
        self.flags = flags  # a master's on this database and bucket
        self.db_url = db_url
        self.api_a, self.api_b = a.api(), b.api()

    def age(self, location: str) -> None:
        """Time passes for an upload: its expiry is due now."""
        db = Database(self.db_url)
        try:
            with db.session() as s:
                s.execute(
                    update(models.PackageUpload)
                    .where(models.PackageUpload.id == location.rsplit("/", 1)[1])
                    .values(expires_at=db.now() - 1)
                )
                s.commit()
        finally:
            db.dispose()

    def on_b(self, location: str) -> str:
        """The same upload's URL on master B."""
        return location.replace(self.a.url, self.b.url)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, pg_cluster, pg_migrated, s3_server) -> Iterator[Pair]:
    url = pg_cluster.create_database(template=pg_migrated)
    root = tmp_path_factory.mktemp("across")
    flags = ["--db-url", url, *s3_flags(s3_server, BUCKET), "--upload-ttl", str(TTL)]
    a, b = (Master(root / name, extra=flags) for name in ("a", "b"))
    for m in (a, b):
        Proc.start(m)  # both at once
    try:
        for m in (a, b):
            wait_for(m._healthy, 90, what=f"master {m.data_dir.name}\n{m.tail()}")
        yield Pair(a, b, flags, url)
    finally:
        for m in (a, b):
            m.stop()
        pg_cluster.drop_database(url)


@pytest.fixture(scope="module")
def bucket(s3_server: str) -> Minio:
    return Minio(s3_server, access_key=KEYS[0], secret_key=KEYS[1], secure=False)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A valid package of a part and a half (12 MiB of random bytes, stored)."""
    return write_big_package(tmp_path_factory.mktemp("big") / "across.zip", 12 * MiB, "across")


def in_progress(bucket: Minio) -> list[str]:
    """What uploads hold in the bucket: multipart uploads and objects under `tus/`."""
    page = bucket._list_multipart_uploads(BUCKET, prefix="tus/")
    objects = bucket.list_objects(BUCKET, prefix="tus/", recursive=True)
    return [u.object_name for u in page.uploads] + [o.object_name or "" for o in objects]


def test_half_the_body_to_a_the_rest_to_b(pair: Pair, bucket: Minio, big: Path) -> None:
    size = big.stat().st_size
    location = tus.create(pair.api_a, size).headers["Location"]
    there = pair.on_b(location)
    half = size // 2
    r = tus.patch_file(pair.api_a, location, big, 0, half)
    assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == half, r.text
    assert tus.offset(pair.api_a, location) == tus.offset(pair.api_b, there) == half

    last = tus.patch_file(pair.api_b, there, big, half, size - half)
    assert last.status_code == 204, last.text
    assert tus.offset(pair.api_a, location) == tus.offset(pair.api_b, there) == size
    sha = tus.sha256_of(big)
    for api, url in ((pair.api_a, location), (pair.api_b, there)):
        got = api.client.get(url)
        assert got.status_code == 200 and got.json()["sha256"] == sha, got.text
    assert [p["sha256"] for p in pair.api_a.get("/packages?name=across")] == [sha]
    key = f"packages/{sha[:2]}/{sha}.zip"
    stored = bucket.get_object(BUCKET, key).read()
    assert hashlib.sha256(stored).hexdigest() == sha
    assert in_progress(bucket) == []
    pair.api_b.request("DELETE", f"/packages/{got.json()['id']}", expect=204)


def test_two_patches_at_once_on_a_and_b_one_is_409(pair: Pair, bucket: Minio, big: Path) -> None:
    size = big.stat().st_size
    location = tus.create(pair.api_b, size).headers["Location"]
    urls = {"a": location.replace(pair.b.url, pair.a.url), "b": location}
    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def send(name: str, api: Api) -> None:
        start.wait()
        answers[name] = tus.patch(api, urls[name], 0, big.read_bytes()).status_code

    threads = [
        threading.Thread(target=send, args=("a", pair.api_a)),
        threading.Thread(target=send, args=("b", pair.api_b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers.values()) == [204, 409], answers
    pkg = pair.api_a.client.get(urls["a"]).json()
    assert pkg["sha256"] == tus.sha256_of(big), pkg
    assert [p["id"] for p in pair.api_b.get("/packages?name=across")] == [pkg["id"]]
    assert in_progress(bucket) == []
    pair.api_a.request("DELETE", f"/packages/{pkg['id']}", expect=204)


@pytest.mark.parametrize("case", ["dotdot_entry", "zip_bomb"])
def test_a_hostile_zip_across_masters_gets_the_clear_error(
    pair: Pair, bucket: Minio, tmp_path: Path, case: str
) -> None:
    make, words = CASES[case]
    path = make(tmp_path / f"{case}.zip")
    size = path.stat().st_size
    location = tus.create(pair.api_a, size).headers["Location"]
    half = size // 2
    assert tus.patch_file(pair.api_a, location, path, 0, half).status_code == 204
    last = tus.patch_file(pair.api_b, pair.on_b(location), path, half, size - half)
    assert last.status_code == 422, last.text
    assert words.lower() in last.json()["error"]["message"].lower()
    again = pair.api_a.client.get(location)  # asked later on the other master: same answer
    assert again.status_code == 422 and again.json() == last.json()
    assert in_progress(bucket) == []
    assert not [o for o in bucket.list_objects(BUCKET, prefix="packages/", recursive=True)]


def test_an_abandoned_upload_expires_and_its_multipart_upload_is_aborted(
    pair: Pair, bucket: Minio, big: Path
) -> None:
    location = tus.create(pair.api_a, big.stat().st_size).headers["Location"]
    assert tus.patch_file(pair.api_a, location, big, 0, 6 * MiB).status_code == 204  # a part
    tail = tus.create(pair.api_b, 1000).headers["Location"]
    assert tus.patch(pair.api_b, tail, 0, b"x" * 100).status_code == 204  # a tail object
    assert len(in_progress(bucket)) == 3
    for upload in (location, tail):
        pair.age(upload)
    wait_for(lambda: in_progress(bucket) == [], timeout=60, what="expiry of both uploads")
    for api, url in ((pair.api_b, pair.on_b(location)), (pair.api_a, tail)):
        assert tus.head(api, url).status_code == 404
    uploads = pair.api_a.get("/packages/uploads")
    assert not [u for u in uploads if u["state"] == "receiving"], uploads


def test_a_master_killed_mid_patch_leaves_what_it_recorded_to_the_others(
    pair: Pair, bucket: Minio, big: Path
) -> None:
    """A third master is killed (-9) in the middle of a PATCH: its lease runs out, and the
    client resumes on B from the last part C recorded."""
    c = Master(pair.a.data_dir.parent / "c", extra=pair.flags)
    c.launch(90)
    try:
        api_c = c.api()
        size = big.stat().st_size
        location = tus.create(api_c, size).headers["Location"]
        there = location.replace(c.url, pair.b.url)
        url = urlsplit(location)
        with socket.create_connection((url.hostname or "", url.port or 80)) as stalled:
            stalled.sendall(
                (
                    f"PATCH {url.path} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {api_c.token}\r\nTus-Resumable: 1.0.0\r\n"
                    f"Upload-Offset: 0\r\nContent-Type: {tus.OCTETS}\r\n"
                    f"Content-Length: {size}\r\n\r\n"
                ).encode()
                + big.read_bytes()[: 10 * MiB]
            )
            wait_for(lambda: tus.offset(pair.api_b, there) == 8 * MiB, 30, what="C's part")
            c.kill9()
        killed = time.monotonic()
        while (
            r := tus.patch_file(pair.api_b, there, big, 8 * MiB, size - 8 * MiB)
        ).status_code == 409:
            assert "busy" in r.json()["error"]["message"], r.text
            assert time.monotonic() - killed < 30, "the dead master's lease never ran out"
            time.sleep(0.5)
        print(f"resumed on B {time.monotonic() - killed:.1f} s after C was killed")
        assert r.status_code == 204, r.text
        assert pair.api_b.client.get(there).json()["sha256"] == tus.sha256_of(big)
        assert in_progress(bucket) == []
    finally:
        c.kill9()
    for pkg in pair.api_b.get("/packages?name=across"):
        pair.api_b.request("DELETE", f"/packages/{pkg['id']}", expect=204)
