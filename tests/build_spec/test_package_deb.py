"""The Debian packaging's own decisions, on this system's files: which packages a program's
libraries come from, and which bundled copies of system libraries the console package drops."""

import shutil
import sys

import pytest

from tests.support import ROOT

sys.path.insert(0, str(ROOT / "build_spec"))
import package_deb

pytestmark = pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (Debian)")


def test_a_program_depends_on_the_packages_of_the_libraries_it_does_not_carry(tmp_path):
    shutil.copy(shutil.which("ls") or "/bin/ls", tmp_path / "ls")  # needs libc and libselinux
    depends = package_deb.library_packages(tmp_path)
    assert depends[0].startswith("libc6 (>= 2.")
    assert "libselinux1" in depends and not any(d.startswith("libc6 ") for d in depends[1:])


def test_a_library_the_tree_carries_is_not_a_dependency(tmp_path):
    shutil.copy(shutil.which("ls") or "/bin/ls", tmp_path / "ls")
    selinux = package_deb.system_libraries()["libselinux.so.1"]
    shutil.copy(selinux, tmp_path / "libselinux.so.1")
    assert "libselinux1" not in package_deb.library_packages(tmp_path)


def test_the_console_package_drops_copies_of_system_libraries_but_not_libpython(tmp_path):
    internal = tmp_path / "_internal"
    (internal / "PySide6/Qt/lib").mkdir(parents=True)
    zlib = package_deb.system_libraries()["libz.so.1"]
    shutil.copy(zlib, internal / "libz.so.1")
    (internal / "libpython3.11.so.1.0").write_bytes(b"\x7fELF")
    (internal / "PySide6/Qt/lib/libQt6Core.so.6").write_bytes(b"\x7fELF")
    (internal / "libQt6Core.so.6").symlink_to("PySide6/Qt/lib/libQt6Core.so.6")
    (internal / "libz.so").symlink_to("libz.so.1")
    assert package_deb.unbundle_system_libraries(internal) == ["libz.so.1"]
    left = sorted(p.name for p in internal.iterdir())
    assert left == ["PySide6", "libQt6Core.so.6", "libpython3.11.so.1.0"]


def test_the_long_description_wraps_at_the_given_width():
    lines = package_deb.wrap("word " * 40, 30)
    assert all(len(line) <= 30 for line in lines) and " ".join(lines) == ("word " * 40).strip()
