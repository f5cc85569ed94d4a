"""Bounded request bodies against a real master: a JSON body over the limit is refused (413) as
it arrives and before auth, without the master's memory growing; a body that stalls is answered
408 and its connection closed while other requests are served; deeply nested JSON is a 400."""

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests import tus
from tests.master.inprocess import make_app, running
from tests.support import Api, Master, build_package, wait_for

BODY_TIMEOUT = 3.0
MIB = 1 << 20


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    m = Master(
        tmp_path_factory.mktemp("bodies") / "master",
        extra=["--body-timeout", str(BODY_TIMEOUT), "--backup-interval", "0"],
    )
    m.launch()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def bapi(bounded: Master) -> Iterator[Api]:
    client = bounded.api()
    yield client
    client.close()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(master: Master) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", master.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One response: (status, headers, JSON body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        assert more, f"closed before an answer: {buf!r}"
        buf += more
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        more = sock.recv(65536)
        assert more, "closed inside the answer"
        rest += more
    return int(lines[0].split()[1]), headers, json.loads(rest[:length] or b"{}")


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def head(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_64_mib_anonymous_body_is_413_and_the_master_does_not_grow(bounded):
    piece = b" " * MIB
    before = rss(bounded.pid)
    # Declared up front: refused from the headers, the body read and dropped, keep-alive kept.
    with connect(bounded) as sock:
        sock.sendall(head("/api/v1/auth/login", f"Content-Length: {64 * MIB}\r\n"))
        for _ in range(64):
            sock.sendall(piece)
        status, headers, body = read_answer(sock)
        assert status == 413, body
        assert body["error"]["code"] == "too_large"
        assert "--max-body-bytes" in body["error"]["message"]
        assert headers.get("connection") != "close"
        # The same connection serves the next request.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock)[0] == 200
    # Chunked: no length to judge by, so it is counted as it arrives.
    with connect(bounded) as sock:
        sock.sendall(head("/api/v1/systems", "Transfer-Encoding: chunked\r\n"))
        chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
        for _ in range(64):
            sock.sendall(chunk)
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_answer(sock)
        assert (status, body["error"]["code"]) == (413, "too_large")
    # Far over any sane size: answered at once, the body never read, the connection closed.
    with connect(bounded) as sock:
        sock.sendall(head("/api/v1/systems", f"Content-Length: {10 << 30}\r\n"))
        status, headers, body = read_answer(sock)
        assert (status, headers.get("connection")) == (413, "close")
        assert closed_by_peer(sock)
    grown = rss(bounded.pid) - before
    assert grown < 16 * MIB, f"master RSS grew by {grown / MIB:.1f} MiB for 3 refused bodies"


def test_a_json_body_just_under_the_limit_and_a_large_package_still_go_through(
    bounded, bapi, tmp_path
):
    pkg = build_package(tmp_path, name="large", files={"data.bin": os.urandom(2 * MIB)})
    assert pkg.stat().st_size > 2 * MIB  # over the JSON limit: uploads have their own
    bapi.upload(pkg, expect=201)
    system = bapi.post("/systems", {"name": "big-bodies"}, expect=201)
    env = {f"K{i}": "v" * 1000 for i in range(900)}  # about 0.9 MiB of JSON
    module = bapi.post(
        f"/systems/{system['id']}/modules",
        {"name": "m", "package": "large", "env": env},
        expect=201,
    )
    assert len(module["env"]) == 900


def test_a_stalled_body_is_408_and_closed_while_others_are_served(bounded, bapi):
    with connect(bounded) as sock:
        sock.sendall(head("/api/v1/auth/login", "Content-Length: 1000\r\n") + b'{"user')
        began = time.monotonic()
        # Meanwhile the master serves everybody else.
        served = [httpx.get(bounded.url + "/healthz", timeout=10).status_code for _ in range(5)]
        assert served == [200] * 5
        assert bapi.get("/systems") is not None
        status, headers, body = read_answer(sock)
        waited = time.monotonic() - began
        assert (status, body["error"]["code"]) == (408, "request_timeout")
        assert "--body-timeout" in body["error"]["message"]
        assert headers.get("connection") == "close"
        assert closed_by_peer(sock)
    assert waited >= BODY_TIMEOUT * 0.9, "answered before the body timeout"


def test_a_stalled_upload_is_408_and_leaves_nothing(bounded, bapi):
    packages = len(bapi.get("/packages"))
    spool = bounded.data_dir / "uploads"
    with connect(bounded) as sock:
        sock.sendall(
            (
                "POST /api/v1/packages HTTP/1.1\r\nHost: t\r\nContent-Type: application/zip\r\n"
                f"Authorization: Bearer {bapi.token}\r\nContent-Length: {10 * MIB}\r\n\r\n"
            ).encode()
            + b"PK" * MIB
        )
        status, _, body = read_answer(sock)
        assert (status, body["error"]["code"]) == (408, "request_timeout")
        assert closed_by_peer(sock)
    assert len(bapi.get("/packages")) == packages
    wait_for(
        lambda: not [p for p in spool.rglob("*") if p.is_file() and "incoming" in str(p)],
        timeout=10,
        what="no partial upload left",
    )


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/systems"])
def test_deeply_nested_json_is_a_400_without_a_stall(bounded, bapi, path):
    deep = "[" * 100_000
    for body in (deep, '{"name": ' + deep + "]" * 100_000 + "}"):
        r = httpx.post(
            bounded.url + path,
            content=body,
            headers={"Authorization": f"Bearer {bapi.token}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "code": "invalid_json",
            "message": "the request body is JSON nested too deeply",
            "details": {},
        }
    # Nested, but not too deep to parse: an ordinary validation error.
    r = bapi.request("POST", "/systems", json={"name": [[[[[["x"]]]]]]})
    assert r.status_code == 422
    # Over the limit, the nesting is never looked at.
    r = httpx.post(bounded.url + path, content="[" * (2 * MIB), timeout=30)
    assert r.status_code == 413


def test_refused_bodies_are_not_audited_and_the_limit_is_a_setting(tmp_path):
    with running(make_app(tmp_path, max_body_bytes=100)) as (client, auth):
        body = {"name": "x", "description": "d" * 200}
        r = client.post("/api/v1/systems", json=body, headers=auth)
        assert r.status_code == 413
        assert r.json()["error"]["details"] == {"limit": 100}
        assert (
            client.post("/api/v1/systems", json={"name": "fits"}, headers=auth).status_code == 201
        )
        audit = client.get("/api/v1/audit", headers=auth).json()
        assert [e["action"] for e in audit].count("create_system") == 1


def test_a_stalled_resumable_upload_keeps_its_bytes_and_resumes(bounded, bapi, tmp_path):
    pkg = build_package(tmp_path, name="stalled-tus", files={"data.bin": os.urandom(3 * MIB)})
    size = pkg.stat().st_size
    location = tus.create(bapi, size).headers["Location"]
    path = urlsplit(location).path
    sent = 2 * MIB
    with connect(bounded) as sock:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {bapi.token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: {tus.OCTETS}\r\n"
                f"Content-Length: {size}\r\n\r\n"
            ).encode()
            + pkg.read_bytes()[:sent]
        )
        status, _, body = read_answer(sock)
        assert (status, body["error"]["code"]) == (408, "request_timeout")
        assert closed_by_peer(sock)
    assert tus.offset(bapi, location) == sent
    assert tus.send_rest(bapi, location, pkg).status_code == 204
    assert bapi.client.get(location).json()["sha256"] == tus.sha256_of(pkg)
