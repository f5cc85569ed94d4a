import json
import stat
import zipfile
from pathlib import Path

import pytest

from protocol.archive import ArchiveLimits, PackageError, extract_package, inspect_package
from protocol.crc import CrcMarks
from protocol.errors import ErrorCode

MANIFEST = json.dumps({"name": "a", "version": "1", "entrypoint": "bin/run"})


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def ok_entries() -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [("service.json", MANIFEST.encode()), ("bin/run", b"#!/bin/sh\n")]


def raw_name_zip(path: Path, bad_name: bytes) -> Path:
    """Write a zip whose second entry has exactly `bad_name` (zipfile would sanitize it)."""
    placeholder = b"X" * len(bad_name)
    make_zip(path, [*ok_entries(), (placeholder.decode(), b"data")])
    data = path.read_bytes().replace(placeholder, bad_name)
    path.write_bytes(data)
    return path


def test_valid_package(tmp_path):
    m = inspect_package(make_zip(tmp_path / "p.zip", ok_entries()))
    assert m.name == "a"


def test_not_a_zip(tmp_path):
    p = tmp_path / "p.zip"
    p.write_bytes(b"this is not a zip")
    with pytest.raises(PackageError) as info:
        inspect_package(p)
    assert info.value.code == ErrorCode.INVALID_PACKAGE


def test_no_manifest(tmp_path):
    with pytest.raises(PackageError) as info:
        inspect_package(make_zip(tmp_path / "p.zip", [("bin/run", b"x")]))
    assert "no service.json" in info.value.message


def test_manifest_not_at_root(tmp_path):
    with pytest.raises(PackageError):
        inspect_package(
            make_zip(
                tmp_path / "p.zip", [("sub/service.json", MANIFEST.encode()), ("bin/run", b"")]
            )
        )


def test_entrypoint_missing(tmp_path):
    with pytest.raises(PackageError) as info:
        inspect_package(make_zip(tmp_path / "p.zip", [("service.json", MANIFEST.encode())]))
    assert "entrypoint" in info.value.message


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/../../evil", "/etc/passwd", "C:/windows/x", "..\\evil", "a\\..\\..\\evil"],
)
def test_traversal_refused(tmp_path, name):
    with pytest.raises(PackageError) as info:
        inspect_package(make_zip(tmp_path / "p.zip", [*ok_entries(), (name, b"x")]))
    assert info.value.code == ErrorCode.UNSAFE_ARCHIVE


def test_nul_byte_in_name_refused(tmp_path):
    p = raw_name_zip(tmp_path / "p.zip", b"ok\x00.txt")
    with pytest.raises(PackageError) as info:
        inspect_package(p)
    assert "NUL" in info.value.message


def test_symlink_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(PackageError) as exc:
        inspect_package(make_zip(tmp_path / "p.zip", [*ok_entries(), (info, b"/etc/passwd")]))
    assert "symbolic link" in exc.value.message


def test_duplicate_entries_refused(tmp_path):
    with pytest.warns(UserWarning):
        p = make_zip(tmp_path / "p.zip", [*ok_entries(), ("bin/run", b"other")])
    with pytest.raises(PackageError) as info:
        inspect_package(p)
    assert "more than once" in info.value.message


def test_zip_bomb_ratio(tmp_path):
    p = make_zip(tmp_path / "p.zip", [*ok_entries(), ("zeros", b"\0" * (64 << 20))])
    with pytest.raises(PackageError) as info:
        inspect_package(p)
    assert "zip bomb" in info.value.message


def test_total_size_limit_counts_actual_bytes(tmp_path):
    p = make_zip(tmp_path / "p.zip", [*ok_entries(), ("a", bytes(range(256)) * 4096)])
    with pytest.raises(PackageError) as info:
        inspect_package(p, ArchiveLimits(max_total_bytes=100_000))
    assert "beyond the limit" in info.value.message


def _patch_sizes(raw: bytearray, name: bytes, size: int) -> None:
    """Rewrite the declared uncompressed size of `name` in its local and central headers."""
    import struct

    for sig, size_off, name_off in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        pos = 0
        while (pos := raw.find(sig, pos)) != -1:
            name_len = struct.unpack_from("<H", raw, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            if raw[pos + name_off : pos + name_off + name_len] == name:
                struct.pack_into("<I", raw, pos + size_off, size)
            pos += 4


def test_lying_header_sizes_do_not_help(tmp_path):
    """Headers claiming a tiny size are not trusted: the bytes are counted as they come."""
    p = make_zip(tmp_path / "p.zip", [*ok_entries(), ("big", b"\0" * (8 << 20))])
    raw = bytearray(p.read_bytes())
    _patch_sizes(raw, b"big", 10)
    p.write_bytes(bytes(raw))
    assert zipfile.ZipFile(p).getinfo("big").file_size == 10
    with pytest.raises(PackageError):
        inspect_package(p, ArchiveLimits(max_total_bytes=1 << 20))


def test_entry_count_limit(tmp_path):
    entries = ok_entries() + [(f"f{i}", b"") for i in range(50)]
    with pytest.raises(PackageError) as info:
        inspect_package(make_zip(tmp_path / "p.zip", entries), ArchiveLimits(max_entries=10))
    assert "entries" in info.value.message


def test_extract_keeps_exec_bit_and_refuses_escape(tmp_path):
    info = zipfile.ZipInfo("bin/run")
    info.external_attr = 0o755 << 16
    p = make_zip(tmp_path / "p.zip", [("service.json", MANIFEST.encode()), (info, b"#!/bin/sh\n")])
    dest = tmp_path / "out"
    extract_package(p, dest)
    assert (dest / "bin/run").stat().st_mode & 0o100
    bad = make_zip(tmp_path / "bad.zip", [*ok_entries(), ("../escape", b"x")])
    with pytest.raises(PackageError):
        extract_package(bad, tmp_path / "out2")
    assert not (tmp_path / "escape").exists()


def test_extract_corrupt_data(tmp_path):
    p = make_zip(tmp_path / "p.zip", [*ok_entries(), ("data", b"abc" * 100000)])
    raw = bytearray(p.read_bytes())
    start = raw.find(b"PK\x03\x04", raw.find(b"data") - 60)
    raw[start + 100 : start + 140] = b"\xff" * 40
    p.write_bytes(bytes(raw))
    with pytest.raises(PackageError):
        inspect_package(p)


# -- large stored entries, checked in place ---------------------------------------------------


@pytest.fixture
def small_in_place(monkeypatch):
    """Take the in-place path from 1 MiB on, split into pieces from 256 KiB: small test files
    go through the same code as a 1 GiB upload, combine of pieces included."""
    from protocol import archive, crc

    monkeypatch.setattr(archive, "STORED_FAST_MIN", 1 << 20)
    monkeypatch.setattr(crc, "PIECE_MIN", 256 << 10)


def stored_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("service.json", MANIFEST)
        zf.writestr("bin/run", "#!/bin/sh\n")
        for name, data in entries:
            zf.writestr(name, data)
    return path


def test_crc32_combine_matches_zlib():
    import os
    import random
    import zlib

    from protocol.crc import crc32_combine

    rng = random.Random(7)
    for _ in range(40):
        a = os.urandom(rng.choice([0, 1, 3, 1000, 70_000]))
        b = os.urandom(rng.choice([0, 1, 5, 4096, 1 << 20 | 7]))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_file_crc32_in_pieces_equals_one_pass(tmp_path, monkeypatch, workers):
    import os
    import zlib

    from protocol import crc

    monkeypatch.setattr(crc, "PIECE_MIN", 100_000)
    data = os.urandom(1_234_567)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert crc.file_crc32(path, 1001, 1_200_000, workers) == zlib.crc32(data[1001:1_201_001])
    with pytest.raises(EOFError):
        crc.file_crc32(path, 1001, len(data), workers)


def test_large_stored_entry_is_checked_in_place(tmp_path, small_in_place, monkeypatch):
    import os

    from protocol import archive

    calls: list[tuple[int, int]] = []
    real = archive.file_crc32

    def spy(path: Path, start: int, length: int) -> int:
        calls.append((start, length))
        return real(path, start, length)

    monkeypatch.setattr(archive, "file_crc32", spy)
    data = os.urandom(3 << 20)
    p = stored_zip(tmp_path / "p.zip", [("data/blob.bin", data), ("small", b"x" * 1000)])
    assert inspect_package(p).name == "a"
    assert [n for _, n in calls] == [len(data)]  # only the large entry; the rest streamed
    start = calls[0][0]
    assert p.read_bytes()[start : start + len(data)] == data


def test_large_stored_entry_with_a_bad_byte_is_refused(tmp_path, small_in_place):
    import os

    data = os.urandom(3 << 20)
    p = stored_zip(tmp_path / "p.zip", [("data/blob.bin", data)])
    raw = bytearray(p.read_bytes())
    at = raw.find(data[:64]) + 2_000_000
    raw[at] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(PackageError) as info:
        inspect_package(p)
    assert info.value.code == ErrorCode.INVALID_PACKAGE
    assert "data/blob.bin" in info.value.message and "CRC" in info.value.message


def test_large_stored_entry_counts_toward_the_total(tmp_path, small_in_place):
    p = stored_zip(tmp_path / "p.zip", [("a", b"a" * (2 << 20)), ("b", b"b" * (2 << 20))])
    with pytest.raises(PackageError) as info:
        inspect_package(p, ArchiveLimits(max_total_bytes=3 << 20))
    assert "beyond the limit" in info.value.message and info.value.details["entry"] == "b"


def test_large_stored_entry_whose_headers_lie_is_refused(tmp_path, small_in_place):
    """The local header names another file, or the entry claims more bytes than the archive
    has: both refused as unreadable, as zipfile's own reading would."""
    import struct

    p = stored_zip(tmp_path / "p.zip", [("data/blob.bin", b"z" * (2 << 20))])
    raw = bytearray(p.read_bytes())
    local_name = raw.find(b"data/blob.bin")  # the local header's copy of the name comes first
    raw[local_name : local_name + 4] = b"evil"
    renamed = tmp_path / "renamed.zip"
    renamed.write_bytes(bytes(raw))
    with pytest.raises(PackageError) as info:
        inspect_package(renamed)
    assert info.value.code == ErrorCode.INVALID_PACKAGE
    assert "'data/blob.bin' cannot be read" in info.value.message and "evil" in info.value.message

    raw = bytearray(p.read_bytes())
    central = raw.rfind(b"PK\x01\x02", 0, raw.rfind(b"data/blob.bin"))
    struct.pack_into("<II", raw, central + 20, 3 << 20, 3 << 20)  # compressed, uncompressed
    too_long = tmp_path / "long.zip"
    too_long.write_bytes(bytes(raw))
    with pytest.raises(PackageError) as info:
        inspect_package(too_long)
    assert info.value.code == ErrorCode.INVALID_PACKAGE
    assert "ends inside it" in info.value.message


def marks_of(path: Path, step: int = 256 << 10, chunk: int = 100_003) -> CrcMarks:
    """CRC marks of `path` taken as the master takes them: chunk by chunk as it is written."""

    marks = CrcMarks(step)
    data = path.read_bytes()
    for i in range(0, len(data), chunk):
        marks.update(data[i : i + chunk])
    return marks


def test_crc_marks_give_the_crc_of_any_range(tmp_path):
    import os
    import zlib

    data = os.urandom(10_007)
    path = tmp_path / "f"
    path.write_bytes(data)
    marks = marks_of(path, step=1000, chunk=333)
    assert marks.size == len(data) and marks.crc == zlib.crc32(data)
    assert len(marks.marks) == 11  # one per whole step, and the empty start
    for start, length in [
        (0, 10_007),
        (0, 0),
        (1000, 3000),  # on marks at both ends
        (999, 3002),  # just outside them
        (1001, 2998),  # just inside
        (17, 9_990),  # to the very end
        (4321, 5),  # within one step
        (10_007, 0),
    ]:
        assert marks.range_crc(path, start, length) == zlib.crc32(data[start : start + length])
    with pytest.raises(EOFError):
        marks.range_crc(path, 9_000, 1_008)


def test_crc_marks_read_only_the_ends_of_a_long_range(tmp_path, monkeypatch):
    import os
    import zlib

    from protocol import crc

    read: list[int] = []
    real = crc._range_crc

    def spy(path: Path, start: int, length: int) -> int:
        read.append(length)
        return real(path, start, length)

    monkeypatch.setattr(crc, "_range_crc", spy)
    data = os.urandom(2_000_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    marks = marks_of(path, step=10_000)
    assert marks.range_crc(path, 5, 1_999_990) == zlib.crc32(data[5:1_999_995])
    assert sum(read) < 2 * 10_000, read


def test_large_stored_entry_is_checked_from_crc_marks(tmp_path, small_in_place, monkeypatch):
    """With the CRCs the master took while the file was written, the large entry is not read
    again; marks of another file's size are not trusted and the file is read as without them."""
    import os

    from protocol import archive

    calls: list[int] = []
    real = archive.file_crc32

    def spy(path: Path, start: int, length: int) -> int:
        calls.append(length)
        return real(path, start, length)

    monkeypatch.setattr(archive, "file_crc32", spy)
    data = os.urandom(3 << 20)
    p = stored_zip(tmp_path / "p.zip", [("data/blob.bin", data)])
    marks = marks_of(p)
    assert inspect_package(p, marks=marks).name == "a"
    assert calls == []
    marks.update(b"one byte more than the file")
    assert inspect_package(p, marks=marks).name == "a"
    assert calls == [len(data)]


def test_large_stored_entry_with_a_bad_byte_is_refused_from_crc_marks(tmp_path, small_in_place):
    import os
    import struct

    data = os.urandom(3 << 20)
    p = stored_zip(tmp_path / "p.zip", [("data/blob.bin", data)])
    raw = bytearray(p.read_bytes())
    raw[raw.find(data[:64]) + 2_000_000] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(PackageError) as info:
        inspect_package(p, marks=marks_of(p))
    assert info.value.code == ErrorCode.INVALID_PACKAGE
    assert "data/blob.bin" in info.value.message and "CRC" in info.value.message

    central = raw.rfind(b"PK\x01\x02", 0, raw.rfind(b"data/blob.bin"))
    struct.pack_into("<II", raw, central + 20, 4 << 20, 4 << 20)  # more than the archive has
    p.write_bytes(bytes(raw))
    with pytest.raises(PackageError) as info:
        inspect_package(p, marks=marks_of(p))
    assert "ends inside it" in info.value.message
