"""Package downloads that retry, with a real master, a real agent and moto's S3 server over HTTP:
the store down and back during the retries (the deploy succeeds), a connection cut mid-body
(the agent resumes with Range), and a store that stays down (a clear error naming it, the
instance `failed`, nothing left on the node)."""

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.test_s3_store import s3_flags
from tests.support import Master, build_package, free_port, wait_for

pytestmark = pytest.mark.slow

RETRY_SECONDS = "8"


class S3:
    """moto's server in this process: its data outlives a stop, so it can come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    store = S3()
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="module")
def s3_master(tmp_path_factory, s3: S3) -> Iterator[Master]:
    m = Master(tmp_path_factory.mktemp("dl") / "master", extra=s3_flags(s3.endpoint))
    m.launch()
    yield m
    m.stop()


def deploy(api, node_id: str, package: str) -> str:
    sid = api.post("/systems", {"name": f"sys-{package}"})["id"]
    mid = api.post(f"/systems/{sid}/modules", {"name": "m", "package": package})["id"]
    return str(api.post("/instances", {"module_id": mid, "node_id": node_id}, expect=202)["id"])


def test_s3_down_then_back_and_s3_that_stays_down(s3, s3_master, agent_factory, tmp_path):
    api = s3_master.api()
    agent = agent_factory(s3_master, extra=["--download-retry-seconds", RETRY_SECONDS])
    node_id = agent.start_and_wait(api)
    for name in ("back", "gone"):
        api.upload(build_package(tmp_path / name, name=name, files={"blob": os.urandom(300_000)}))
    package = api.get("/packages?name=back")[0]
    whole = api.request("GET", f"/packages/{package['id']}/download", follow_redirects=True).content
    # The presigned S3 URL honours Range (the agent resumes with it).
    r = api.request(
        "GET",
        f"/packages/{package['id']}/download",
        headers={"Range": "bytes=1000-"},
        follow_redirects=True,
    )
    assert r.status_code == 206 and r.content == whole[1000:]

    # Down during the deploy, back during the retries: the deploy succeeds.
    s3.stop()
    try:
        iid = deploy(api, node_id, "back")
        wait_for(lambda: "retry 2 in" in agent.tail(200), timeout=20, what="retries")
        assert api.get(f"/instances/{iid}")["state"] == "deploying"
    finally:
        s3.start()
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deployed")
    assert f"the object store at {s3.endpoint}" in agent.tail(200)
    assert (agent.work_dir / iid / "current" / "blob").stat().st_size == 300_000

    # Down for good: a clear error naming the store once the retries run out.
    s3.stop()
    try:
        iid = deploy(api, node_id, "gone")
        inst = wait_for(
            lambda: (i := api.get(f"/instances/{iid}"))["state"] == "failed" and i, timeout=40
        )
    finally:
        s3.start()
    error = inst["last_error"]
    assert error.startswith("download of gone 1.0.0 from the object store at " + s3.endpoint)
    assert "tries over" in error
    assert not (agent.work_dir / iid).exists(), "nothing half-written is left"
    api.close()


class CuttingProxy:
    """TCP to the master; the first package download is cut after `cut_after` bytes."""

    def __init__(self, upstream: int, cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.downloads: list[bytes] = []  # each download request's head
        self.answers: list[bytes] = []  # each download answer's status line
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream)) as up:
            first = client.recv(65536)
            limit = None
            download = first.startswith(b"GET /api/v1/packages/") and b"/download " in first
            if download:
                self.downloads.append(first)
                limit = self.cut_after if len(self.downloads) == 1 else None
            up.sendall(first)
            threading.Thread(target=_pump, args=(client, up, None, None), daemon=True).start()
            _pump(up, client, limit, self.answers if download else None)

    def close(self) -> None:
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket, limit: int | None, heads: list | None) -> None:
    sent = 0
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            if heads is not None and sent == 0:
                heads.append(data.split(b"\r\n", 1)[0])
            if limit is not None and sent + len(data) >= limit:
                dst.sendall(data[: limit - sent])
                break  # cut: both sides close
            dst.sendall(data)
            sent += len(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def test_a_cut_download_resumes_with_range(master, api, agent_factory, tmp_path):
    proxy = CuttingProxy(master.port, cut_after=200_000)
    try:
        agent = agent_factory(master, extra=["--master", proxy.url])
        node_id = agent.start_and_wait(api)
        api.upload(build_package(tmp_path, name="big", files={"blob": os.urandom(1_000_000)}))
        package = api.get("/packages?name=big")[0]
        # The master's own route honours Range.
        r = api.request(
            "GET", f"/packages/{package['id']}/download", headers={"Range": "bytes=100-199"}
        )
        assert r.status_code == 206 and len(r.content) == 100
        iid = deploy(api, node_id, "big")
        wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deployed")
        assert len(proxy.downloads) == 2, proxy.downloads
        assert b"range:" not in proxy.downloads[0].lower()
        head = proxy.downloads[1].decode().lower()
        resumed_at = int(head.split("range: bytes=", 1)[1].split("-", 1)[0])
        assert 0 < resumed_at < 200_000
        assert proxy.answers[1].startswith(b"HTTP/1.1 206")
        assert (agent.work_dir / iid / "current" / "blob").stat().st_size == 1_000_000
        assert "retry 1 in" in agent.tail(200) and "the master (" in agent.tail(200)
    finally:
        proxy.close()
    assert httpx.get(master.url + "/healthz").status_code == 200
