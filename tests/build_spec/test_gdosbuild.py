"""The build helpers' decisions that need no PyInstaller run: what the console bundle leaves
out, the links that go with it, the icons drawn for Windows and macOS."""

import subprocess
import sys

import pytest

from tests.support import ROOT, child_env

sys.path.insert(0, str(ROOT / "build_spec"))
import gdosbuild


@pytest.mark.parametrize(
    ("name", "left_out"),
    [
        ("PySide6/Qt/translations/qtbase_de.qm", True),  # Linux and macOS wheels
        ("PySide6\\translations\\qtbase_de.qm", True),  # Windows wheel, Windows separators
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", True),
        ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", True),
        ("PySide6\\plugins\\platforms\\qvnc.dll", True),
        ("PySide6/Qt/plugins/imageformats/libqpdf.dylib", True),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", False),
        ("PySide6\\plugins\\platforms\\qwindows.dll", False),
        ("PySide6/Qt/plugins/platforms/libqcocoa.dylib", False),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", False),
        ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", False),
    ],
)
def test_what_the_console_leaves_out(name, left_out):
    assert gdosbuild.unused(name) is left_out


def test_links_to_what_was_left_out_go_too():
    entries = [
        ("PySide6/Qt/translations/qt_de.qm", "/src/qt_de.qm", "DATA"),
        ("qt_de.qm", "PySide6/Qt/translations/qt_de.qm", "SYMLINK"),
        ("resources/icon.svg", "/src/icon.svg", "DATA"),
        ("icon.svg", "resources/icon.svg", "SYMLINK"),
    ]
    assert gdosbuild.without_unused(entries) == [entries[2], entries[3]]


def test_the_icon_is_drawn_for_windows_and_macos(tmp_path):
    """In a process of its own, as in a build: it makes its own offscreen Qt application."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'build_spec'); import gdosbuild;"
        f"[gdosbuild.render_icon(k, Path({str(tmp_path)!r})) for k in ('ico', 'icns')]"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "gdos-console.ico").read_bytes()[:4] == b"\0\0\1\0"
    assert (tmp_path / "gdos-console.icns").read_bytes()[:4] == b"icns"


def test_the_build_lists_every_gdos_module_for_the_self_check():
    gdosbuild.write_build_info.cache_clear()
    try:
        info_dir = gdosbuild.write_build_info()
        namespace: dict = {}
        exec((ROOT / "build" / "buildinfo" / "_gdos_build_info.py").read_text(), namespace)
    finally:
        gdosbuild.write_build_info.cache_clear()
    assert info_dir.endswith("buildinfo")
    modules = namespace["MODULES"]
    assert sorted(modules) == ["agent", "console", "master"]
    assert {"agent.__main__", "protocol.frozen"} <= set(modules["agent"])
    assert {"master.selfcheck", "master.db.session"} <= set(modules["master"])
    assert {"console.app", "console.selfcheck"} <= set(modules["console"])
    assert namespace["COMMIT"] and namespace["BUILD_DATE"][:2] == "20"
