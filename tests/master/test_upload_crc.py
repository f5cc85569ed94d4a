"""Uploads, one-shot and tus, are validated from the CRCs the master took while writing them:
a large stored entry is not read again, and a bad byte in it is still refused."""

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from protocol import archive
from tests.master.inprocess import make_app, running

TUS = {"Tus-Resumable": "1.0.0"}


def stored_package(version: str, blob: bytes) -> bytes:
    buf = io.BytesIO()
    manifest = {"name": "crc", "version": version, "entrypoint": "bin/run"}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("service.json", json.dumps(manifest))
        zf.writestr("bin/run", "#!/bin/sh\nsleep 60\n")
        zf.writestr("data/blob.bin", blob)
    return buf.getvalue()


@pytest.fixture
def no_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "STORED_FAST_MIN", 1 << 20)  # 3 MiB entries take that path

    def read_again(path: Path, start: int, length: int) -> int:
        raise AssertionError(f"{length} bytes of {path.name} read again to check their CRC")

    monkeypatch.setattr(archive, "file_crc32", read_again)


def test_uploads_are_checked_from_the_crcs_taken_while_writing(tmp_path, no_second_pass):
    blob = os.urandom(3 << 20)
    with running(make_app(tmp_path / "m")) as (client, auth):
        one_shot = stored_package("1", blob)
        r = client.post(
            "/api/v1/packages",
            content=one_shot,
            headers={**auth, "Content-Type": "application/zip"},
        )
        assert r.status_code == 201, r.text

        data = stored_package("2", blob)
        r = client.post(
            "/api/v1/packages/uploads",
            headers={**auth, **TUS, "Upload-Length": str(len(data))},
        )
        location = r.headers["Location"]
        half = len(data) // 2
        for at, piece in ((0, data[:half]), (half, data[half:])):
            r = client.patch(
                location,
                content=piece,
                headers={
                    **auth,
                    **TUS,
                    "Upload-Offset": str(at),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert r.status_code == 204, r.text
        assert client.get(location, headers=auth).json()["version"] == "2"

        bad = bytearray(stored_package("3", blob))
        bad[bytes(bad).find(blob[:64]) + 2_000_000] ^= 0xFF
        r = client.post(
            "/api/v1/packages",
            content=bytes(bad),
            headers={**auth, "Content-Type": "application/zip"},
        )
        assert r.status_code == 422, r.text
        assert "CRC" in r.json()["error"]["message"]
