"""The build helpers' decisions that need no PyInstaller run: what the console bundle leaves
out, the links that go with it, the icons drawn for Windows and macOS."""

import json
import subprocess
import sys
from pathlib import Path

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


def test_the_console_bundle_leaves_postgresql_to_the_standalone_master():
    entries = [
        ("psycopg", "/src/psycopg/__init__.py", "PYMODULE"),
        ("psycopg.pq", "/src/psycopg/pq/__init__.py", "PYMODULE"),
        ("psycopg_binary/_psycopg.so", "/src/_psycopg.so", "EXTENSION"),
        ("psycopg_binary.libs/libpq-e9b5c9ac.so.5.18", "/src/libpq.so", "BINARY"),
        ("psycopg-3.3.9.dist-info/METADATA", "/src/METADATA", "DATA"),
        ("sqlalchemy.dialects.sqlite", "/src/sqlite.py", "PYMODULE"),
        ("psutil/_psutil_linux.so", "/src/_psutil_linux.so", "EXTENSION"),
    ]
    kept = gdosbuild.without_packages(entries, gdosbuild.CONSOLE_MASTER_WITHOUT)
    assert kept == entries[-2:]


@pytest.mark.parametrize(
    ("item", "kept"),
    [
        ("coll/root.res", True),
        ("coll/ucadata.icu", True),
        ("coll/en_US.res", True),
        ("zoneinfo64.res", True),
        ("zone/en.res", True),
        ("res_index.res", True),
        ("pool.res", True),
        ("cnvalias.icu", True),
        ("coll/de.res", False),
        ("coll/de__PHONEBOOK.res", False),
        ("sr_Latn_RS.res", False),
        ("zone/fr.res", False),
        ("ibm-1252_P100-2000.cnv", False),
        ("brkitr/cjdict.dict", False),
        ("translit/root.res", False),
        ("unames.icu", False),
    ],
)
def test_what_icu_data_the_console_keeps(item, kept):
    import icudata

    assert icudata.keep(item) is kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt brings ICU on Linux only")
def test_qt_sorts_and_edits_text_with_the_smaller_icu_data(tmp_path):
    """The reduced library replaces Qt's own in a fresh process (LD_LIBRARY_PATH is searched
    before Qt's RUNPATH): non-ASCII text sorts as with the full data, edits and converts."""
    import icudata
    from PySide6 import QtCore

    qt_lib = Path(QtCore.__file__).parent / "Qt" / "lib"
    full = next(qt_lib.glob("libicudata.so.*"))
    small = icudata.reduced(full, tmp_path / "cache")
    assert small.stat().st_size < full.stat().st_size / 5
    code = """if True:
        import json
        from PySide6.QtCore import QCollator, QDateTime, QLocale, QTimeZone
        from PySide6.QtWidgets import QApplication, QLineEdit
        app = QApplication(["t", "-platform", "offscreen"])
        words = ["zebra", "Äpfel", "apple", "Zürich", "éclair", "Ölfeld", "日本", "Ωmega"]
        edit = QLineEdit()
        edit.setText("Grüße, 日本")
        edit.insert(" Ωmega")
        paris = QTimeZone(b"Europe/Paris")
        print(json.dumps({
            "sorted": sorted(words, key=QCollator(QLocale("en_US")).sortKey),
            "upper": QLocale("tr_TR").toUpper("istanbul"),
            "text": edit.text(),
            "zone": paris.isValid() and paris.offsetFromUtc(QDateTime.fromSecsSinceEpoch(1767268800)),
        }))
    """
    runs = {}
    for name, lib in (("full", full), ("small", small)):
        env = child_env(LD_LIBRARY_PATH=str(lib.parent))
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout.splitlines()[-1])
    assert runs["small"] == runs["full"]
    assert runs["small"]["sorted"][:3] == ["Äpfel", "apple", "éclair"]
    assert runs["small"]["text"] == "Grüße, 日本 Ωmega"
    assert runs["small"]["upper"] == "İSTANBUL" and runs["small"]["zone"] == 3600
