"""A full master disk: a clear 507, the partial file removed, the database still usable.

The master's whole data directory (database and uploads) sits on a real, tiny tmpfs, so the
disk really fills. Mounting needs root; elsewhere the test is skipped (tests/master/test_spool.py
covers the same path at the OS seam)."""

import os
import subprocess
from pathlib import Path

import pytest

from tests import tus
from tests.support import Master, build_package

pytestmark = pytest.mark.slow

DISK_MB = 24


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {DISK_MB} MB tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def full_master(small_disk: Path):
    m = Master(small_disk / "data")
    m.launch()
    yield m
    m.stop()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return filler


def partials(m: Master) -> list[Path]:
    return [p for p in (m.data_dir / "uploads").rglob("*") if p.is_file()]


def still_works(api, tmp_path: Path, version: str) -> None:
    assert api.get("/packages") is not None
    pkg = api.upload(build_package(tmp_path / version, name="after-full", version=version)).json()
    assert pkg["version"] == version
    assert api.get("/audit", params={"limit": 5})


def test_one_shot_upload_on_a_full_disk(full_master, tmp_path):
    api = full_master.api()
    big = random_file(tmp_path / "big.zip", (DISK_MB + 16) << 20)
    r = api.upload(big, expect=507)
    err = r.json()["error"]
    assert err["code"] == "storage_full" and "disk is full" in err["message"]
    assert partials(full_master) == [], "the partial file must go"
    still_works(api, tmp_path, "1")


def test_tus_upload_on_a_full_disk(full_master, small_disk, tmp_path):
    api = full_master.api()
    r = tus.create(api, (DISK_MB + 16) << 20, expect=507)
    assert r.json()["error"]["code"] == "storage_full", "refused up front: it cannot fit"

    data = random_file(tmp_path / "data.zip", 8 << 20)
    location = tus.create(api, data.stat().st_size).headers["Location"]
    assert tus.patch_file(api, location, data, 0, 1 << 20).status_code == 204
    filler = fill(small_disk)  # something else takes the disk meanwhile
    r = tus.patch_file(api, location, data, 1 << 20, data.stat().st_size - (1 << 20))
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "storage_full"
    assert partials(full_master) == [], "the partial file must go"
    assert api.client.get(location).json()["error"]["code"] == "storage_full"

    filler.unlink()
    still_works(api, tmp_path, "2")
    location, last = tus.upload(api, build_package(tmp_path / "t", name="after-full", version="3"))
    assert last.status_code == 204 and api.client.get(location).json()["version"] == "3"
