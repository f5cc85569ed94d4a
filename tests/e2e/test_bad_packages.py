"""Every invalid package kind is refused with 422 naming the problem, and nothing is kept."""

import hashlib
import json
import os
import socket
import stat
import struct
import zipfile
from pathlib import Path

import httpx
import pytest

from tests import tus
from tests.support import build_package, wait_for

MANIFEST = {"name": "bad", "version": "1", "entrypoint": "bin/run"}


def zip_of(path: Path, entries: dict[str, bytes | str], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def base(**over) -> dict[str, bytes | str]:
    return {"service.json": json.dumps({**MANIFEST, **over}), "bin/run": "#!/bin/sh\n"}


CASES = {
    "not_a_zip": (lambda p: (p.write_bytes(b"MZ this is no zip"), p)[1], "not a valid zip"),
    "no_manifest": (lambda p: zip_of(p, {"bin/run": "x"}), "no service.json"),
    "malformed_json": (
        lambda p: zip_of(p, {"service.json": "{ nope", "bin/run": ""}),
        "malformed JSON",
    ),
    "missing_field": (
        lambda p: zip_of(
            p, {"service.json": json.dumps({"name": "x", "entrypoint": "bin/run"}), "bin/run": ""}
        ),
        "version",
    ),
    "wrong_type": (lambda p: zip_of(p, base(args="not-a-list")), "args"),
    "unknown_field": (
        lambda p: zip_of(p, base(restrat="on-failure")),
        "unknown field restrat (did you mean restart?)",
    ),
    "entrypoint_absent": (
        lambda p: zip_of(p, {"service.json": json.dumps(MANIFEST)}),
        "entrypoint",
    ),
    "entrypoint_outside": (lambda p: zip_of(p, base(entrypoint="../../bin/sh")), "entrypoint"),
    "dotdot_entry": (
        lambda p: zip_of(p, {**base(), "../../etc/cron.d/x": "boom"}),
        "outside the package",
    ),
    "absolute_entry": (
        lambda p: zip_of(p, {**base(), "/etc/passwd": "boom"}),
        "outside the package",
    ),
    "drive_entry": (
        lambda p: zip_of(p, {**base(), "C:\\Windows\\x.dll": "boom"}),
        "outside the package",
    ),
    "symlink_entry": (lambda p: zip_of(p, base(), symlink="bin/link"), "symbolic link"),
    "env_cannot_run": (lambda p: zip_of(p, base(env={"A=B": "1"})), "env.A=B"),
    "arg_cannot_run": (lambda p: zip_of(p, base(args=["ok", "n\x00l"])), "args.1"),
    "zip_bomb": (lambda p: zip_of(p, {**base(), "zeros.bin": b"\0" * (300 << 20)}), "zip bomb"),
}


def leftovers(master) -> list[Path]:
    uploads = master.data_dir / "uploads"
    return [p for p in uploads.rglob("*") if p.is_file()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_package_is_422_and_leaves_nothing(shared_master, shared_api, tmp_path, case):
    make, words = CASES[case]
    path = make(tmp_path / f"{case}.zip")
    r = shared_api.upload(path, expect=422)
    err = r.json()["error"]
    assert words.lower() in err["message"].lower(), err
    assert leftovers(shared_master) == [], "a rejected upload left files behind"
    names = [p["name"] for p in shared_api.get("/packages")]
    assert "bad" not in names


def test_duplicate_is_409_and_delete(shared_master, shared_api, tmp_path):
    pkg = build_package(tmp_path, name="dup", version="2.0")
    first = shared_api.upload(pkg, expect=201).json()
    r = shared_api.upload(pkg, expect=409)
    assert "already exists" in r.json()["error"]["message"]
    files = leftovers(shared_master)
    assert len(files) == 1 and first["sha256"] in files[0].name
    shared_api.request("DELETE", f"/packages/{first['id']}", expect=204)
    assert leftovers(shared_master) == []


def test_empty_body_and_size_limit(master_factory, tmp_path):
    m = master_factory("small", extra=["--max-package-size", "1000"])
    api = m.api()
    r = api.request("POST", "/packages", content=b"", headers={"Content-Type": "application/zip"})
    assert r.status_code == 422
    big = build_package(tmp_path, files={"blob": bytes(range(256)) * 20})
    r = api.upload(big, expect=413)
    assert "limit" in r.json()["error"]["message"]
    assert [p for p in (m.data_dir / "uploads").rglob("*") if p.is_file()] == []


def test_package_in_use_cannot_be_deleted(shared_api, tmp_path):
    pkg = shared_api.upload(build_package(tmp_path, name="used", version="1")).json()
    system = shared_api.post("/systems", {"name": "uses-it"})
    shared_api.post(f"/systems/{system['id']}/modules", {"name": "m", "package": "used"})
    r = shared_api.request("DELETE", f"/packages/{pkg['id']}")
    assert r.status_code == 409


def strays(master, api) -> list[Path]:
    """Files in the upload dir that are not a registered package's."""
    kept = {p["sha256"] for p in api.get("/packages")}
    return [p for p in leftovers(master) if p.stem not in kept]


def tus_send(api, path: Path) -> tuple[str, "httpx.Response"]:
    """Upload over tus in two PATCHes (so the refusal comes at the end of a resumed upload)."""
    size = path.stat().st_size
    location = tus.create(api, size).headers["Location"]
    half = size // 2
    if half:
        assert tus.patch_file(api, location, path, 0, half).status_code == 204
    return location, tus.patch_file(api, location, path, half, size - half)


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_package_over_tus_is_refused_and_leaves_nothing(
    shared_master, shared_api, tmp_path, case
):
    make, words = CASES[case]
    path = make(tmp_path / f"{case}.zip")
    location, last = tus_send(shared_api, path)
    assert last.status_code == 422, last.text
    assert words.lower() in last.json()["error"]["message"].lower()
    assert last.headers["Tus-Resumable"] == "1.0.0"
    again = shared_api.client.get(location)  # the client may ask later: same answer
    assert again.status_code == 422 and again.json() == last.json()
    assert tus.offset(shared_api, location) == path.stat().st_size  # nothing left to resend
    assert strays(shared_master, shared_api) == [], "a rejected upload left files behind"
    assert "bad" not in [p["name"] for p in shared_api.get("/packages")]


def test_duplicate_over_tus_is_409_and_leaves_nothing(shared_master, shared_api, tmp_path):
    pkg = build_package(tmp_path, name="dup-tus", version="1")
    first = shared_api.upload(pkg, expect=201).json()
    location, last = tus_send(shared_api, pkg)
    assert last.status_code == 409 and "already exists" in last.json()["error"]["message"]
    assert shared_api.client.get(location).status_code == 409
    assert strays(shared_master, shared_api) == []
    assert first["sha256"] in [p.stem for p in leftovers(shared_master)]
    shared_api.request("DELETE", f"/packages/{first['id']}", expect=204)
    assert first["sha256"] not in [p.stem for p in leftovers(shared_master)]


def test_declared_oversize_is_413_before_the_body_is_read(master_factory):
    """The master answers from the headers alone: the client never has to send the body."""
    m = master_factory("tiny", extra=["--max-package-size", "1000"])
    api = m.api()
    with socket.create_connection(("127.0.0.1", m.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /api/v1/packages HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {api.token}\r\nContent-Type: application/zip\r\n"
                "Content-Length: 5000000000\r\n\r\n"
            ).encode()
        )
        answer = ""
        while "too_large" not in answer and (more := sock.recv(65536)):
            answer += more.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "too_large" in answer
    r = tus.create(api, 5_000_000_000, expect=413)
    assert r.json()["error"]["code"] == "too_large"
    assert [p for p in (m.data_dir / "uploads").rglob("*") if p.is_file()] == []


def test_a_one_shot_upload_cut_midway_leaves_no_row_and_no_file(
    shared_master, shared_api, tmp_path
):
    pkg = build_package(tmp_path, name="cut-midway", files={"data.bin": os.urandom(8 << 20)})
    data = pkg.read_bytes()
    files_before = leftovers(shared_master)
    tracebacks = shared_master.log_path.read_text().count("Traceback")
    incoming = shared_master.data_dir / "uploads" / ".incoming"
    with socket.create_connection(("127.0.0.1", shared_master.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /api/v1/packages HTTP/1.1\r\nHost: x\r\nContent-Type: application/zip\r\n"
                f"Authorization: Bearer {shared_api.token}\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[: len(data) // 2]
        )
        wait_for(
            lambda: any(p.stat().st_size > 0 for p in incoming.glob("*.part")),
            what="the first half on the master's disk",
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    wait_for(lambda: leftovers(shared_master) == files_before, timeout=15, what="no partial file")
    assert all(p["name"] != "cut-midway" for p in shared_api.get("/packages"))
    assert shared_master.log_path.read_text().count("Traceback") == tracebacks
    # Nothing else changed: the same upload, whole, goes through.
    whole = shared_api.upload(pkg).json()
    assert whole["sha256"] == hashlib.sha256(data).hexdigest()
    shared_api.request("DELETE", f"/packages/{whole['id']}", expect=204)


def test_a_package_whose_zip_is_gone_is_404_not_a_server_error(shared_master, shared_api, tmp_path):
    """A restored backup can name a package deleted after it was taken: its zip is gone."""
    pkg = shared_api.upload(build_package(tmp_path, name="gone", version="1")).json()
    (zip_file,) = [p for p in leftovers(shared_master) if pkg["sha256"] in p.name]
    zip_file.unlink()
    r = shared_api.request("GET", f"/packages/{pkg['id']}/download")
    assert r.status_code == 404, r.text
    assert "upload it again" in r.json()["error"]["message"]
    shared_api.request("DELETE", f"/packages/{pkg['id']}", expect=204)
