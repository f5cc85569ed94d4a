"""Resumable uploads kept in the bucket, continued by any master: two masters' upload services
over one real database (SQLite and PostgreSQL) and one S3 server (moto's, over HTTP), with the
request bodies fed in chunks at the HTTP seam."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from sqlalchemy import func, select, update

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.services import shared_upload_expiry
from master.services.shared_uploads import SharedUploads
from master.services.upload_claims import Claim
from master.services.upload_parts import PartSink
from master.services.uploads import COMPLETE, FAILED, RECEIVING
from master.storage.multipart import PART_SIZE, PREFIX
from master.storage.s3 import S3Store
from protocol.errors import ErrorCode, GdosError
from tests.e2e.test_bad_packages import CASES
from tests.e2e.test_tus_upload import write_big_package

pytestmark = pytest.mark.slow  # each test moves MiBs through an S3 server

MiB = 1 << 20
KEYS = ("test-ak", "test-sk")


class Body:
    """A PATCH body in chunks; with `pause_at`, it stops before that byte until `go` is set."""

    def __init__(self, data: bytes, chunk: int = MiB, pause_at: int | None = None) -> None:
        self.cut = False
        self._chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        self._sent = 0
        self._pause_at = pause_at
        self.paused = asyncio.Event()
        self.go = asyncio.Event()

    async def next(self) -> bytes | None:
        if self._pause_at is not None and self._sent >= self._pause_at and not self.go.is_set():
            self.paused.set()
            await self.go.wait()
        if not self._chunks:
            return None
        chunk = self._chunks.pop(0)
        self._sent += len(chunk)
        return chunk

    async def discard(self) -> None:
        self._chunks.clear()


class Cluster:
    """Two masters' upload services on one database and one bucket."""

    def __init__(self, tmp_path: Path, db_url: str, endpoint: str, bucket: str) -> None:
        self.db = Database(db_url)
        self.db.migrate()
        self.bucket = bucket
        self.client = Minio(endpoint, access_key=KEYS[0], secret_key=KEYS[1], secure=False)
        if not self.client.bucket_exists(bucket):
            self.client.make_bucket(bucket)
        self.masters = []
        for name in ("a", "b"):
            settings = Settings(data_dir=tmp_path / name, upload_ttl=3600.0)
            store = S3Store(endpoint, *KEYS, bucket, incoming=tmp_path / name / "incoming")
            uploads = SharedUploads(self.db, store, settings)
            uploads.patch_wait = uploads.head_wait = 0.3
            self.masters.append(uploads)

    def in_bucket(self, prefix: str = "") -> list[str]:
        return sorted(
            o.object_name or "" for o in self.client.list_objects(self.bucket, prefix, True)
        )

    def multipart_uploads(self) -> list[str]:
        page = self.client._list_multipart_uploads(self.bucket, prefix=PREFIX)
        return [u.object_name for u in page.uploads]

    def packages_with(self, sha256: str) -> int:
        with self.db.session() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(models.Package)
                    .where(models.Package.sha256 == sha256)
                )
                or 0
            )


@pytest.fixture
def cluster(tmp_path: Path, db_url: str, s3_server: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, db_url, s3_server, f"shared-{secrets.token_hex(6)}")
    yield c
    c.db.dispose()


@pytest.fixture
def sqlite_cluster(tmp_path: Path, s3_server: str) -> Iterator[Cluster]:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    c = Cluster(tmp_path, url, s3_server, f"shared-{secrets.token_hex(6)}")
    yield c
    c.db.dispose()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid package of a part and a half: 12 MiB of random bytes stored."""
    path = tmp_path_factory.mktemp("pkg") / "shared-1.zip"
    return write_big_package(path, 12 * MiB, name="shared").read_bytes()


async def test_an_upload_continues_on_the_other_master(cluster: Cluster, package: bytes) -> None:
    a, b = cluster.masters
    size = len(package)
    row = a.create(size, {"filename": "shared-1.zip"}, "admin")

    # 3 MiB to A: less than a part, kept as the tail object; both masters see the offset.
    row = await a.write(row.id, 0, 3 * MiB, Body(package[: 3 * MiB]))
    assert await a.settled_offset(row) == await b.settled_offset(row) == 3 * MiB
    assert row.parts == [] and row.tail_size == 3 * MiB
    assert [k.rsplit("/", 1)[1].split("-")[0] for k in cluster.in_bucket(PREFIX)] == ["tail"]

    # 7 MiB to B: B prepends A's tail, sends one part of 8 MiB, keeps 2 MiB as a new tail.
    row = await b.write(row.id, 3 * MiB, 7 * MiB, Body(package[3 * MiB : 10 * MiB]))
    assert [p[:2] for p in row.parts or []] == [[1, PART_SIZE]]
    assert row.tail_size == 2 * MiB and row.offset == 10 * MiB
    assert await a.settled_offset(row) == await b.settled_offset(row) == 10 * MiB
    tails = [k for k in cluster.in_bucket(PREFIX) if "/tail-" in k]
    assert tails == [row.tail_key], "the tail B replaced is gone"

    # A wrong offset is refused on either master, and changes nothing.
    with pytest.raises(GdosError) as refused:
        await a.write(row.id, 3 * MiB, None, Body(b"x"))
    assert refused.value.code == ErrorCode.CONFLICT and refused.value.details["offset"] == 10 * MiB

    # The rest to A: the last part, then the package, validated and registered once.
    row = await a.write(row.id, 10 * MiB, size - 10 * MiB, Body(package[10 * MiB :]))
    assert row.state == COMPLETE and a.load(row.id).writer is None
    sha = hashlib.sha256(package).hexdigest()
    with cluster.db.session() as s:
        pkg = s.get(models.Package, row.package_id)
        assert pkg is not None and pkg.sha256 == sha and pkg.size == size
    assert cluster.packages_with(sha) == 1
    assert cluster.in_bucket() == [f"packages/{sha[:2]}/{sha}.zip"]
    assert cluster.multipart_uploads() == []
    stored = cluster.client.get_object(cluster.bucket, f"packages/{sha[:2]}/{sha}.zip").read()
    assert hashlib.sha256(stored).hexdigest() == sha
    assert await b.settled_offset(row) == size
    # A retried last PATCH (its answer lost) gets the finished upload, on either master.
    assert (await b.write(row.id, size, None, Body(b""))).state == COMPLETE


async def test_two_patches_at_once_on_two_masters_one_is_409(
    cluster: Cluster, package: bytes
) -> None:
    a, b = cluster.masters
    size = len(package)
    row = a.create(size, {}, "admin")
    body = Body(package, pause_at=9 * MiB)
    first = asyncio.create_task(a.write(row.id, 0, size, body))
    await asyncio.wait_for(body.paused.wait(), 30)

    # A's first part is recorded as soon as the bucket has it; A still holds the upload.
    for _ in range(300):
        if a.load(row.id).offset == PART_SIZE:
            break
        await asyncio.sleep(0.05)
    # B is told the upload is busy: the row is A's, whatever the offset B names.
    for at in (0, PART_SIZE):
        with pytest.raises(GdosError) as busy:
            await b.write(row.id, at, size - at, Body(package[at:]))
        assert busy.value.code == ErrorCode.CONFLICT and "busy" in busy.value.message
    # HEAD waits a moment for the writer, then tells what is recorded so far.
    assert await b.settled_offset(row) == PART_SIZE

    body.go.set()
    done = await asyncio.wait_for(first, 60)
    assert done.state == COMPLETE
    with cluster.db.session() as s:
        pkg = s.get(models.Package, done.package_id)
        assert pkg is not None and pkg.sha256 == hashlib.sha256(package).hexdigest()


async def test_a_lost_claim_records_nothing(cluster: Cluster) -> None:
    a = cluster.masters[0]
    row = a.create(100, {}, "admin")
    first, second = Claim(cluster.db, row.id), Claim(cluster.db, row.id)
    assert first.try_take() and not second.try_take()
    # The first writer stalls past its lease (its master stopped): the second takes over.
    with cluster.db.session() as s:
        up = s.get(models.PackageUpload, row.id)
        assert up is not None
        up.lease_until = cluster.db.now() - 1
        s.commit()
    assert second.try_take()
    with pytest.raises(GdosError) as lost:
        first.record(60.0, offset=50)
    assert lost.value.code == ErrorCode.CONFLICT and first.lost
    second.record(60.0, offset=7)
    assert a.load(row.id).offset == 7


async def test_a_body_past_the_length_keeps_nothing_of_it(sqlite_cluster: Cluster) -> None:
    a, b = sqlite_cluster.masters
    data = os.urandom(18 * MiB)
    size = 17 * MiB + 5
    row = a.create(size, {}, "admin")
    row = await a.write(row.id, 0, MiB, Body(data[:MiB]))
    with pytest.raises(GdosError) as too_long:
        # No Content-Length: the excess shows only after whole parts went to the bucket.
        await b.write(row.id, MiB, None, Body(data[MiB:]))
    assert too_long.value.code == ErrorCode.TOO_LARGE
    again = a.load(row.id)
    assert (again.offset, again.parts, again.tail_key) == (MiB, [], row.tail_key)
    assert again.writer is None


@pytest.mark.parametrize("case", ["not_a_zip", "dotdot_entry", "symlink_entry"])
async def test_a_hostile_zip_is_refused_and_nothing_is_kept(
    sqlite_cluster: Cluster, tmp_path: Path, case: str
) -> None:
    a, b = sqlite_cluster.masters
    make, words = CASES[case]
    data = make(tmp_path / f"{case}.zip").read_bytes()
    half = len(data) // 2
    row = a.create(len(data), {}, "admin")
    row = await a.write(row.id, 0, half, Body(data[:half]))
    row = await b.write(row.id, half, len(data) - half, Body(data[half:]))
    assert row.state == FAILED and row.error is not None
    assert words.lower() in row.error["message"].lower()
    assert sqlite_cluster.in_bucket() == [] and sqlite_cluster.multipart_uploads() == []
    assert [p for p in (tmp_path / "a").rglob("*") if p.is_file()] == []
    assert [p for p in (tmp_path / "b").rglob("*") if p.is_file()] == []


async def test_abandoned_uploads_expire_with_their_multipart_uploads(
    cluster: Cluster, package: bytes
) -> None:
    a, b = cluster.masters
    with_part = a.create(len(package), {}, "admin")
    await a.write(with_part.id, 0, 6 * MiB, Body(package[: 6 * MiB]))  # a part of 6 MiB
    with_tail = b.create(len(package), {}, "admin")
    await b.write(with_tail.id, 0, MiB, Body(package[:MiB]))  # a tail object
    empty = a.create(1000, {}, "admin")
    # Not expired yet: expiry on both masters leaves everything alone.
    for m in (a, b):
        assert await shared_upload_expiry.expire(m) == 0
    assert len(cluster.multipart_uploads()) == 3

    # A multipart upload and an object no row names (what a writer that lost its upload left).
    orphan = f"{PREFIX}feedfeedfeedfeed/package.zip"
    cluster.client._create_multipart_upload(cluster.bucket, orphan, {})
    cluster.client.put_object(
        cluster.bucket, f"{PREFIX}feedfeedfeedfeed/tail-0-x", io.BytesIO(b"x"), 1
    )

    # Time passes: the uploads' expiry is due, the leftovers are older than the TTL.
    with cluster.db.session() as s:
        s.execute(update(models.PackageUpload).values(expires_at=cluster.db.now() - 1))
        s.commit()
    for m in (a, b):
        m.settings = dataclasses.replace(m.settings, upload_ttl=0.5)
    await asyncio.sleep(1.0)
    removed = await shared_upload_expiry.expire(b)
    assert removed == 5  # three uploads, the orphan multipart upload and the orphan object
    assert await shared_upload_expiry.expire(a) == 0
    assert cluster.multipart_uploads() == []
    assert cluster.in_bucket() == []
    with cluster.db.session() as s:
        ids = {with_part.id, with_tail.id, empty.id}
        assert (
            s.scalars(select(models.PackageUpload).where(models.PackageUpload.id.in_(ids))).all()
            == []
        )


async def test_an_upload_whose_master_stopped_before_finishing_is_finished_by_expiry(
    sqlite_cluster: Cluster, package: bytes
) -> None:
    """Every byte recorded, the master gone before it assembled them: another master's
    expiry pass registers the package."""
    a, b = sqlite_cluster.masters
    row = a.create(len(package), {}, "admin")
    claim = Claim(sqlite_cluster.db, row.id)
    assert claim.try_take()
    sink = PartSink(a.parts, claim, a.load(row.id), b"", a.ttl)
    for i in range(0, len(package), MiB):
        await sink.feed(package[i : i + MiB])
    await sink.close()
    # The master dies here: its lease runs out, nobody finished the upload.
    with sqlite_cluster.db.session() as s:
        up = s.get(models.PackageUpload, row.id)
        assert up is not None and up.offset == len(package) and up.state == RECEIVING
        up.lease_until = 0.0
        s.commit()
    await shared_upload_expiry.expire(b)
    done = b.load(row.id)
    assert done.state == COMPLETE and done.package_id
    assert sqlite_cluster.packages_with(hashlib.sha256(package).hexdigest()) == 1
    assert sqlite_cluster.multipart_uploads() == []


async def test_a_part_sent_late_by_a_writer_that_lost_the_upload_spoils_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A's master froze with its second part in flight; B took the upload over. The part A
    sends when it wakes has a number B never uses, so the package is B's bytes."""
    a, b = cluster.masters
    data = write_big_package(tmp_path / "late.zip", 20 * MiB, name="late").read_bytes()
    row = a.create(len(data), {}, "admin")
    claim = Claim(cluster.db, row.id)
    assert claim.try_take()
    sink = PartSink(a.parts, claim, a.load(row.id), b"", a.ttl)
    await sink.feed(data[:PART_SIZE])
    await sink.close()
    claim.record(a.ttl, last_part=2)  # A takes the next number, then freezes before sending
    with cluster.db.session() as s:
        s.execute(update(models.PackageUpload).values(lease_until=0.0))
        s.commit()

    middle = 2 * PART_SIZE
    await b.write(row.id, PART_SIZE, None, Body(data[PART_SIZE:middle]))
    late = bytes(PART_SIZE)  # A wakes: its part reaches the bucket after B's
    await a.parts.put_part(row.id, row.s3_upload or "", 2, late)
    done = await b.write(row.id, middle, None, Body(data[middle:]))
    assert done.state == COMPLETE, done.error
    assert [n for n, _size, _etag in b.load(row.id).parts or []] == [1, 3, 4]
    with cluster.db.session() as s:
        pkg = s.get(models.Package, done.package_id)
        assert pkg is not None and pkg.sha256 == hashlib.sha256(data).hexdigest()
