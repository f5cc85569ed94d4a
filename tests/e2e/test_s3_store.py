"""The MinIO/S3 store end to end against an S3 server over HTTP (moto's, started here): uploads
land in the bucket, agents download through presigned URLs and check sha256, rejections leave
nothing in the bucket."""

import hashlib
import io
import subprocess
import sys

import httpx
import pytest
from minio import Minio
from moto.server import ThreadedMotoServer

from tests import tus
from tests.e2e.test_bad_packages import CASES, tus_send
from tests.support import Master, build_package, child_env, free_port, port_open, wait_for

pytestmark = pytest.mark.slow

BUCKET = "gdos-test"
KEYS = ("test-ak", "test-sk")


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> Minio:
    return Minio(
        s3_endpoint, access_key=KEYS[0], secret_key=KEYS[1], secure=False, region="us-east-1"
    )


def objects(client: Minio) -> list[str]:
    return sorted(o.object_name for o in client.list_objects(BUCKET, recursive=True))


def s3_flags(endpoint: str, bucket: str = BUCKET) -> list[str]:
    """The master's flags for the test bucket on an S3 server at `endpoint`."""
    return [
        "--store-type",
        "minio",
        "--minio-endpoint",
        endpoint,
        "--minio-ak",
        KEYS[0],
        "--minio-sk",
        KEYS[1],
        "--minio-bucket",
        bucket,
    ]


@pytest.fixture(scope="module")
def s3_master(tmp_path_factory, s3_endpoint, bucket):
    m = Master(tmp_path_factory.mktemp("s3") / "master", extra=s3_flags(s3_endpoint))
    m.launch()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def sapi(s3_master):
    client = s3_master.api()
    yield client
    client.close()


def test_bucket_is_created_and_uploads_land_in_it(s3_master, sapi, bucket, tmp_path):
    assert bucket.bucket_exists(BUCKET), "the master creates a missing bucket"
    one_shot = sapi.upload(build_package(tmp_path, name="s3-one", version="1")).json()
    location, last = tus.upload(sapi, build_package(tmp_path, name="s3-tus", version="1"))
    assert last.status_code == 204
    over_tus = sapi.client.get(location).json()
    names = objects(bucket)
    for pkg in (one_shot, over_tus):
        assert f"packages/{pkg['sha256'][:2]}/{pkg['sha256']}.zip" in names
    # Nothing stays on the master's disk but empty working directories.
    assert [p for p in (s3_master.data_dir / "uploads").rglob("*") if p.is_file()] == []

    # Users download through the master: a redirect to a presigned URL.
    r = sapi.client.get(f"/api/v1/packages/{one_shot['id']}/download")
    assert r.status_code == 307 and r.headers["location"].startswith("http://127.0.0.1")
    body = httpx.get(r.headers["location"]).content
    assert hashlib.sha256(body).hexdigest() == one_shot["sha256"]

    for pkg in (one_shot, over_tus):
        sapi.request("DELETE", f"/packages/{pkg['id']}", expect=204)
    assert objects(bucket) == [
        n for n in names if over_tus["sha256"] not in n and one_shot["sha256"] not in n
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejections_leave_nothing_in_the_bucket(s3_master, sapi, bucket, tmp_path, case):
    before = objects(bucket)
    make, words = CASES[case]
    path = make(tmp_path / f"{case}.zip")
    r = sapi.upload(path, expect=422)
    assert words.lower() in r.json()["error"]["message"].lower()
    _, last = tus_send(sapi, path)
    assert last.status_code == 422
    assert objects(bucket) == before
    assert [p for p in (s3_master.data_dir / "uploads").rglob("*") if p.is_file()] == []


def test_duplicate_version_is_409_and_the_bucket_keeps_one_copy(sapi, bucket, tmp_path):
    pkg = build_package(tmp_path, name="s3-dup", version="7")
    first = sapi.upload(pkg).json()
    before = objects(bucket)
    assert sapi.upload(pkg, expect=409).json()["error"]["code"] == "already_exists"
    _, last = tus_send(sapi, pkg)
    assert last.status_code == 409
    assert objects(bucket) == before
    sapi.request("DELETE", f"/packages/{first['id']}", expect=204)


def test_deploy_start_stop_through_presigned_urls(s3_master, sapi, bucket, agent_factory, tmp_path):
    agent = agent_factory(s3_master)
    node_id = agent.start_and_wait(sapi)
    port = free_port()
    old = build_package(
        tmp_path / "v1",
        name="s3-web",
        version="1.0.0",
        manifest={"args": ["--port", str(port)], "env": {"GREETING": "old"}},
    )
    new = build_package(
        tmp_path / "v2",
        name="s3-web",
        version="1.1.0",
        manifest={"args": ["--port", str(port)], "env": {"GREETING": "from s3"}},
    )
    sapi.upload(old)
    _, last = tus.upload(sapi, new)
    assert last.status_code == 204
    system = sapi.post("/systems", {"name": "s3-demo"})
    module = sapi.post(f"/systems/{system['id']}/modules", {"name": "web", "package": "s3-web"})
    assert module.get("version") is None  # null: the newest

    inst = sapi.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)
    iid = inst["id"]
    done = wait_for(
        lambda: (i := sapi.get(f"/instances/{iid}"))["state"] in ("stopped", "failed") and i,
        timeout=60,
        what="deploy",
    )
    assert done["state"] == "stopped", done
    assert done["version"] == "1.1.0"
    fetches = [
        line for line in agent.log_path.read_text().splitlines() if "fetching package" in line
    ]
    assert fetches and all("(presigned URL)" in line for line in fetches), fetches
    assert not any("from the master" in line for line in fetches), "fetched through the master"
    assert "X-Amz-Signature" not in agent.log_path.read_text(), (
        "a presigned URL leaked into the log"
    )

    sapi.post(f"/instances/{iid}/start", expect=202)
    wait_for(lambda: sapi.get(f"/instances/{iid}")["state"] == "running", what="running")
    wait_for(lambda: port_open(port), what="service port")
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "from s3\n"
    sapi.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: sapi.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
    assert not port_open(port)

    # The deployed version is in use: its deletion is refused, and the bucket keeps it.
    newest = sapi.get("/packages?name=s3-web")[0]
    assert newest["version"] == "1.1.0"
    r = sapi.request("DELETE", f"/packages/{newest['id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
    assert f"packages/{newest['sha256'][:2]}/{newest['sha256']}.zip" in objects(bucket)


def test_a_corrupted_object_is_refused_by_the_agent(
    s3_master, sapi, bucket, agent_factory, tmp_path
):
    """The agent checks sha256 even when the bytes come straight from the bucket."""
    agent = agent_factory(s3_master, name="agent-sha")
    node_id = agent.start_and_wait(sapi)
    pkg = sapi.upload(build_package(tmp_path, name="s3-bad", version="1")).json()
    key = f"packages/{pkg['sha256'][:2]}/{pkg['sha256']}.zip"

    evil = b"PK not what was uploaded"
    bucket.put_object(BUCKET, key, io.BytesIO(evil), len(evil))
    system = sapi.post("/systems", {"name": "s3-corrupt"})
    module = sapi.post(f"/systems/{system['id']}/modules", {"name": "m", "package": "s3-bad"})
    inst = sapi.post("/instances", {"module_id": module["id"], "node_id": node_id}, expect=202)
    failed = wait_for(
        lambda: (i := sapi.get(f"/instances/{inst['id']}"))["state"] == "failed" and i,
        timeout=60,
        what="deploy refused",
    )
    assert "sha256" in failed["last_error"]
    assert not (agent.work_dir / inst["id"] / "current").exists()


def test_a_misconfigured_store_stops_the_master_with_one_clear_line(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "master",
            "--port",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(tmp_path),
            "--store-type",
            "minio",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert "--minio-endpoint" in r.stderr and "Traceback" not in r.stderr
