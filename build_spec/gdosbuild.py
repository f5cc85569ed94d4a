"""Shared by the PyInstaller specs in this directory (they import it through SPECPATH).

`write_build_info()` generates the `_gdos_build_info` module that `protocol.frozen.build_info()`
reads in a frozen program: the git commit, the build date and the list of GDOS modules that
`--self-check` imports. `GDOS_BUILD_COMMIT` and `SOURCE_DATE_EPOCH` override the first two
(release pipelines, reproducible builds). `analyse()` runs PyInstaller's analysis of one
program; `onefile()` and `console_bundle()` make the executables from it, so all.spec analyses
each program once for its one-file build and the console bundle alike.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from protocol import __version__ as VERSION  # noqa: E402  (after ROOT is importable)
from protocol.frozen import git_describe  # noqa: E402
from protocol.selfcheck import reachable_modules  # noqa: E402

BUILD_INFO_MODULE = "_gdos_build_info"
PROGRAMS = ("agent", "master", "console")  # each its package's name
MIGRATIONS = ROOT / "master" / "db" / "migrations"

# Things a development venv holds (or optional imports reach) that no GDOS program needs frozen:
# werkzeug comes in through a test dependency's hook and drags in cryptography.
EXCLUDES = [
    "werkzeug",
    "flask",
    "cryptography",
    "pygments",
    "rich",
    "jinja2",
    "yaml",
    "h2",
    "hpack",
    "socksio",
    "tkinter",
    "_tkinter",
    "pytest",
    "_pytest",
    "hypothesis",
    "readline",  # no interactive prompt anywhere; it would bring libreadline and ncurses
    "mypy",
    "ruff",
    "moto",
    "boto3",
    "botocore",
    "IPython",
    "PyInstaller",
    "setuptools",
    "pip",
    "numpy",  # no GDOS program imports it; shiboken's optional support would bring it
]
# The embedded master keeps its data in SQLite: the console bundle's master leaves PostgreSQL's
# driver (and its libpq, OpenSSL and Kerberos) to the standalone master. It also takes uploads'
# CRCs with the standard zlib (zlib-ng only makes gigabyte uploads cheaper, and a packaged copy
# of a zlib is refused by Debian's policy checks).
CONSOLE_MASTER_WITHOUT = ("psycopg", "psycopg_binary", "psycopg_c", "psycopg_pool", "zlib_ng")
# The console draws with QtWidgets and QtCharts only; the hooks of these would bring their Qt
# libraries and plugins (QML and Quick above all).
CONSOLE_EXCLUDES = [
    "PySide6.QtNetwork",
    "PySide6.QtOpenGL",
    "PySide6.QtOpenGLWidgets",
    "PySide6.QtDBus",
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtSvg",
    "PySide6.QtPdf",
]
# What the console's Qt keeps out, by path in the bundle: translations (the console is in
# English), the GTK theme (the build cannot find its GTK libraries; Qt falls back to its own
# style), input and device plugins that load QML or QtNetwork, embedded-display platforms, and
# image formats other than SVG and ICO. Qt libraries only these needed go with them.
QT_UNUSED = [
    # PySide6's wheels put Qt under PySide6/Qt/ (Linux, macOS) or PySide6/ (Windows); plugins
    # are lib<name>.so, lib<name>.dylib or <name>.dll, hence the wildcards.
    "PySide6/*translations/*",
    "PySide6/*plugins/platformthemes/*qgtk3.*",
    "PySide6/*plugins/platforminputcontexts/*qtvirtualkeyboardplugin.*",
    "PySide6/*plugins/egldeviceintegrations/*",
    "PySide6/*plugins/generic/*",
    "PySide6/*plugins/networkinformation/*",
    "PySide6/*plugins/tls/*",
    "PySide6/*plugins/platforms/*qeglfs.*",
    "PySide6/*plugins/platforms/*qlinuxfb.*",
    "PySide6/*plugins/platforms/*qminimalegl.*",
    "PySide6/*plugins/platforms/*qvkkhrdisplay.*",
    "PySide6/*plugins/platforms/*qvnc.*",
    "PySide6/*plugins/imageformats/*qgif.*",
    "PySide6/*plugins/imageformats/*qicns.*",
    "PySide6/*plugins/imageformats/*qjpeg.*",
    "PySide6/*plugins/imageformats/*qpdf.*",
    "PySide6/*plugins/imageformats/*qtga.*",
    "PySide6/*plugins/imageformats/*qtiff.*",
    "PySide6/*plugins/imageformats/*qwbmp.*",
    "PySide6/*plugins/imageformats/*qwebp.*",
]

# Libraries every Linux desktop has, left to the system (on Linux): D-Bus's client library, and
# with it systemd's and libgcrypt, which it alone brings.
DESKTOP_LIBRARIES = ("libdbus-1.so.3",)

# Linux binaries (libpython above all) carry symbol tables: `stripped()` removes
# them; elsewhere they stay.
STRIP = sys.platform.startswith("linux")


def git_commit() -> str:
    if os.environ.get("GDOS_BUILD_COMMIT"):
        return os.environ["GDOS_BUILD_COMMIT"]
    return git_describe(ROOT) or "unknown"


def build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = float(epoch) if epoch else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


@functools.cache
def write_build_info() -> str:
    """Write the module into build/buildinfo/ (once per build, so all programs carry the same)
    and return that directory (for pathex)."""
    out_dir = ROOT / "build" / "buildinfo"
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = "".join(
        f"    {program!r}: {tuple(reachable_modules(program, ROOT))!r},\n" for program in PROGRAMS
    )
    body = (
        f'COMMIT = "{git_commit()}"\nBUILD_DATE = "{build_date()}"\n'
        f"# The GDOS modules each program reaches; its `--self-check` imports them.\n"
        f"MODULES = {{\n{modules}}}\n"
    )
    (out_dir / f"{BUILD_INFO_MODULE}.py").write_text(
        f'"""Generated by build_spec/gdosbuild.py at build time; not in git."""\n\n{body}'
    )
    return str(out_dir)


def optional(*modules: str) -> list[str]:
    """The modules of an optional extra that are installed (e.g. minio for S3)."""
    return [m for m in modules if importlib.util.find_spec(m) is not None]


def gdos_modules(program: str) -> list[str]:
    """Named so that modules only `--self-check` imports (by name) are in the build too."""
    return reachable_modules(program, ROOT)


def analyse(program: str) -> Any:
    """PyInstaller's Analysis of `agent`, `master` or `console` (spec context only)."""
    from PyInstaller.building.build_main import Analysis  # type: ignore[import-untyped]

    kwargs = {"agent": agent_analysis, "master": master_analysis, "console": console_analysis}
    return Analysis(**kwargs[program](write_build_info()))


def onefile(analysis: Any, name: str) -> Any:
    """One self-contained file (dist/<name>): what a server gets, copied or packaged."""
    from PyInstaller.building.api import EXE, PYZ  # type: ignore[import-untyped]

    return EXE(
        PYZ(analysis.pure),
        analysis.scripts,
        stripped(analysis.binaries),
        analysis.datas,
        [],
        name=name,
        console=True,
        icon=icon_file(),
        strip=False,  # stripped() did it, sparing the libraries strip corrupts
        upx=False,
        runtime_tmpdir=None,
    )


def console_bundle(console: Any, master: Any, agent: Any) -> Any:
    """dist/gdos-console/: the console, and the master and agent its embedded mode starts, as
    three programs sharing one _internal/ folder of libraries (on macOS an .app of them)."""
    from PyInstaller.building.api import COLLECT, EXE, PYZ
    from PyInstaller.building.osx import BUNDLE  # type: ignore[import-untyped]

    icon = icon_file()
    programs = [("gdos-console", console, False), ("gdos-master", master, True)]
    programs.append(("gdos-agent", agent, True))
    pure = {"gdos-master": without_packages(master.pure, CONSOLE_MASTER_WITHOUT)}
    exes = [
        EXE(
            PYZ(pure.get(name, a.pure)),
            a.scripts,
            [],
            exclude_binaries=True,
            name=name,
            console=terminal,  # Windows: the console opens no terminal window
            icon=icon,
            strip=False,
            upx=False,
        )
        for name, a, terminal in programs
    ]
    for exe in exes:  # the modules the bootloader itself needs (zlib, _struct) come through here
        exe.dependencies = stripped(exe.dependencies)
    files = [e for _, a, _ in programs for e in (*a.binaries, *a.datas)]
    files = without_packages(files, CONSOLE_MASTER_WITHOUT)  # only the master brings these
    folder = COLLECT(
        *exes,
        stripped(with_small_icu(without_unused(files))),
        strip=False,
        upx=False,
        name="gdos-console",
    )
    if sys.platform != "darwin":
        return folder
    return BUNDLE(
        folder,
        name="GDOS Console.app",
        icon=icon,
        bundle_identifier="org.gdos.console",
        info_plist={"NSHighResolutionCapable": True, "CFBundleShortVersionString": VERSION},
    )


WEBSOCKETS_UNUSED_BY_THE_AGENT = [
    f"websockets.{name}"
    for name in (
        "asyncio",
        "sync",
        "legacy",
        "trio",
        "cli",
        "__main__",
        "server",
        "auth",
        "proxy",
        "connection",
        "extensions.permessage_deflate",
    )
]


def agent_analysis(info_dir: str) -> dict[str, Any]:
    return {
        "scripts": [str(ROOT / "build_spec" / "run_agent.py")],
        "pathex": [str(ROOT), info_dir],
        "hiddenimports": [BUILD_INFO_MODULE, *gdos_modules("agent")],
        "hookspath": [str(ROOT / "build_spec" / "agent_hooks")],
        # Of websockets the agent uses at most the sans-I/O client protocol (agent.wsclient).
        "excludes": [
            *EXCLUDES,
            "click",
            "PySide6",
            "shiboken6",
            "qasync",
            "fastapi",
            "uvicorn",
            "sqlalchemy",
            "alembic",
            *WEBSOCKETS_UNUSED_BY_THE_AGENT,
        ],
        "noarchive": False,
    }


def master_analysis(info_dir: str) -> dict[str, Any]:
    from PyInstaller.utils.hooks import collect_submodules  # type: ignore[import-untyped]

    return {
        "scripts": [str(ROOT / "build_spec" / "run_master.py")],
        "pathex": [str(ROOT), info_dir],
        # Alembic reads env.py and versions/*.py as source files at run time.
        "datas": [
            (str(MIGRATIONS / "env.py"), "master/db/migrations"),
            (str(MIGRATIONS / "script.py.mako"), "master/db/migrations"),
            (str(MIGRATIONS / "versions" / "*.py"), "master/db/migrations/versions"),
        ],
        "hiddenimports": [
            BUILD_INFO_MODULE,
            *gdos_modules("master"),
            # uvicorn picks its loop, protocols and lifespan by name at run time.
            *collect_submodules("uvicorn"),
            *collect_submodules("websockets"),
            "sqlalchemy.dialects.sqlite",
            "sqlalchemy.dialects.sqlite.pysqlite",
            # Alembic's DDL implementations and operations are looked up by dialect name; the
            # migration scripts import alembic.op and sqlalchemy themselves.
            *collect_submodules(
                "alembic", filter=lambda name: not name.startswith("alembic.testing")
            ),
            *optional("minio"),
        ],
        "excludes": [*EXCLUDES, "PySide6", "shiboken6", "qasync"],
        "noarchive": False,
    }


def console_analysis(info_dir: str) -> dict[str, Any]:
    resources = ROOT / "resources"
    return {
        "scripts": [str(ROOT / "build_spec" / "run_console.py")],
        "pathex": [str(ROOT), info_dir],
        "datas": [(str(resources), "resources")],
        "hiddenimports": [
            BUILD_INFO_MODULE,
            *gdos_modules("console"),
            # Named so PySide6's hooks collect their Qt plugins even while the console imports
            # them lazily.
            *optional("PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtCharts"),
            *optional("qasync"),
        ],
        "excludes": [*EXCLUDES, *CONSOLE_EXCLUDES, "fastapi", "uvicorn", "sqlalchemy", "alembic"],
        "noarchive": False,
    }


def icon_file() -> str | None:
    """The programs' icon for Windows (.ico) or macOS (.icns); None elsewhere (a Linux desktop
    entry names the SVG itself)."""
    kind = {"win32": "ico", "darwin": "icns"}.get(sys.platform)
    return str(render_icon(kind, ROOT / "build" / "icons")) if kind else None


def render_icon(kind: str, out_dir: Path, size: int = 256) -> Path:
    """resources/icon.svg drawn at `size` pixels into an .ico, .icns or .png (Qt's writers)."""
    from PySide6.QtGui import QGuiApplication, QIcon

    app = QGuiApplication.instance() or QGuiApplication(["gdosbuild", "-platform", "offscreen"])
    image = QIcon(str(ROOT / "resources" / "icon.svg")).pixmap(size, size).toImage()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gdos-console.{kind}"
    if image.isNull() or not image.save(str(path)):  # the format follows the suffix
        raise RuntimeError(f"could not draw the icon as {kind} (Qt's SVG or {kind} plugin?)")
    del app
    return path


Entry = tuple[str, str, str]  # PyInstaller's (name in the bundle, source path, kind)


def stripped(entries: list[Entry]) -> list[Entry]:
    """On Linux, the binaries with their symbol tables stripped (copies kept in build/strip-cache),
    except the libraries a wheel vendors in `<package>.libs/`: patchelf rewrote those and strip
    corrupts them (numpy's OpenBLAS then fails with "ELF load command ... not page-aligned").
    The specs pass strip=False to PyInstaller, which would strip every binary."""
    if not STRIP:
        return entries
    cache = ROOT / "build" / "strip-cache"
    out: list[Entry] = []
    for dest, src, kind in entries:
        if kind not in ("BINARY", "EXTENSION") or ".libs/" in dest:
            out.append((dest, src, kind))
            continue
        st = os.stat(src)
        recipe = "strip, $ORIGIN-only search path"  # a change here must miss the old copies
        key = hashlib.sha256(
            f"{recipe}|{os.path.realpath(src)}|{st.st_size}|{st.st_mtime_ns}".encode()
        )
        target = cache / key.hexdigest()[:20] / os.path.basename(dest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            shutil.copy2(src, partial)
            subprocess.run(["strip", str(partial)], check=True, capture_output=True)
            _drop_outside_search_paths(partial)
            os.replace(partial, target)  # whole or absent, for builds running side by side
        out.append((dest, str(target), kind))
    return out


def without_packages(entries: list[Entry], packages: tuple[str, ...]) -> list[Entry]:
    """`entries` (modules by dotted name, or files by path in the bundle) minus those of these
    top-level packages, their `.libs/` folders and their `.dist-info/`."""

    def top(name: str) -> str:
        first = name.replace("\\", "/").split("/")[0]
        return first.split(".")[0].split("-")[0]

    return [e for e in entries if top(e[0]) not in packages]


def with_small_icu(entries: list[Entry]) -> list[Entry]:
    """On Linux, Qt's ICU data library swapped for one with only what the console uses
    (build_spec/icudata.py); elsewhere Qt brings no ICU of its own."""
    if not sys.platform.startswith("linux"):
        return entries
    import icudata

    cache = ROOT / "build" / "icu-cache"
    return [
        (dest, str(icudata.reduced(Path(src), cache)), kind)
        if kind == "BINARY" and re.fullmatch(r"libicudata\.so\.\d+", os.path.basename(dest))
        else (dest, src, kind)
        for dest, src, kind in entries
    ]


def unused(name: str) -> bool:
    """In QT_UNUSED (`name`: the path in the bundle, either separator)."""
    posix = name.replace("\\", "/")
    return any(fnmatch.fnmatchcase(posix, pattern) for pattern in QT_UNUSED)


def without_unused(entries: list[Entry]) -> list[Entry]:
    """`entries` minus QT_UNUSED, and on Linux minus the shared libraries nothing kept needs."""
    kept = [e for e in entries if not unused(e[0])]
    if sys.platform.startswith("linux"):
        kept = _needed_only([e for e in kept if e[0] not in DESKTOP_LIBRARIES])
    # PyInstaller's links to libraries (src: the target, relative to the link) go with them.
    names = {e[0] for e in kept if e[2] != "SYMLINK"}
    return [
        e
        for e in kept
        if e[2] != "SYMLINK" or os.path.normpath(os.path.join(os.path.dirname(e[0]), e[1])) in names
    ]


def _drop_outside_search_paths(path: Path) -> None:
    """Keep only the `$ORIGIN` entries of a library search path (RUNPATH, RPATH): a Python
    built into a prefix (pyenv) records that prefix, which would point the bundle's modules at
    the build machine's directories."""
    dump = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True).stdout
    found = [
        ln.split()[1] for ln in dump.splitlines() if ln.split()[:1] in (["RUNPATH"], ["RPATH"])
    ]
    if not found:
        return
    kept = [entry for entry in found[0].split(":") if entry.startswith("$ORIGIN")]
    if len(kept) == len(found[0].split(":")):
        return
    if shutil.which("patchelf") is None:
        raise RuntimeError(f"patchelf is needed to clean {path.name} (scripts/system-deps.sh)")
    change = ["--set-rpath", ":".join(kept)] if kept else ["--remove-rpath"]
    subprocess.run(["patchelf", *change, str(path)], check=True, capture_output=True)


def _is_library(name: str) -> bool:
    """A shared library found as a dependency (not a Python extension, a Qt plugin or libpython)."""
    base = os.path.basename(name)
    return (
        base.startswith("lib")
        and ".so" in base
        and "/plugins/" not in name
        and not base.startswith("libpython")
    )


def _needed(path: str) -> list[str]:
    out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=False)
    return [
        line.split()[1] for line in out.stdout.splitlines() if line.strip().startswith("NEEDED")
    ]


def _needed_only(entries: list[Entry]) -> list[Entry]:
    """Drop the libraries no kept binary reaches through DT_NEEDED (the dropped plugins' own)."""
    binaries = [e for e in entries if e[2] in ("BINARY", "EXTENSION")]
    by_base = {os.path.basename(e[0]): e for e in binaries if _is_library(e[0])}
    todo = [e for e in binaries if not _is_library(e[0])]
    reached: set[str] = set()
    while todo:
        entry = todo.pop()
        for lib in _needed(entry[1]):
            if lib in by_base and lib not in reached:
                reached.add(lib)
                todo.append(by_base[lib])
    dropped = sorted(base for base in by_base if base not in reached)
    if dropped:
        print(f"gdosbuild: leaving out libraries nothing kept needs: {', '.join(dropped)}")
    return [e for e in entries if e[1] not in {by_base[b][1] for b in dropped}]
