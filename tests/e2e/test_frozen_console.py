"""The console folder, as a workstation gets it (built once per source state): it starts under a
real X server with `--embedded`, its window comes up painted, the master it started is healthy
with the bundled agent online, and quitting leaves no process behind."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.frozen_build import frozen_console
from tests.support import Api, free_port, wait_for
from tests.xvfb import missing_tools, screenshot_colours, window_titles, xvfb

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the CI build runs on Linux"),
]


@pytest.fixture(scope="module")
def console() -> Path:
    return frozen_console()


def test_the_bundle_passes_its_self_check_with_master_and_agent(console):
    assert {p.name for p in console.parent.iterdir()} >= {"gdos-master", "gdos-agent", "_internal"}
    done = subprocess.run([console, "--self-check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gdos-master and gdos-agent passed theirs" in done.stdout
    version = subprocess.run([console, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("gdos-console 0.1.0") and "frozen     : yes" in version.stdout


def test_the_bundle_leaves_out_the_qt_parts_the_console_never_loads(console):
    internal = console.parent / "_internal"
    names = {p.relative_to(internal).as_posix() for p in internal.rglob("*")}
    qt = "PySide6/Qt"
    assert f"{qt}/plugins/platforms/libqxcb.so" in names
    assert f"{qt}/plugins/iconengines/libqsvgicon.so" in names
    unwanted = [
        n
        for n in names
        if n.startswith((f"{qt}/translations/", f"{qt}/qml/"))
        or any(part in n for part in ("libQt6Quick", "libQt6Qml", "libQt6Pdf", "libqgtk3"))
        or "WebEngine" in n
    ]
    assert not unwanted
    assert not [p for p in internal.rglob("*") if p.is_symlink() and not p.exists()]


def processes_of(data_dir: Path, bundle: Path) -> list[psutil.Process]:
    """Every process started from the bundle or naming the data directory on its command line."""
    found = []
    for proc in psutil.process_iter(["exe", "cmdline"]):
        exe, cmdline = proc.info["exe"] or "", " ".join(proc.info["cmdline"] or ())
        if exe.startswith(str(bundle)) or str(data_dir) in cmdline:
            found.append(proc)
    return found


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}")
def test_embedded_console_comes_up_painted_and_quits_cleanly(console, tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDOS_", "QT_"))}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    log = tmp_path / "console.log"
    with xvfb() as display, open(log, "wb") as out:
        proc = subprocess.Popen(
            [console, "--embedded", "--data-dir", data_dir, "--embedded-port", str(port)],
            env={**env, "DISPLAY": display},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # The title names the master's URL, then its id once the console knows it.
            title = f"GDOS console — http://127.0.0.1:{port}"
            wait_for(
                lambda: any(t.startswith(title) for t in window_titles(display)),
                120,
                0.5,
                what=f"window\n{log}",
            )
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            # The bundled agent, started by the bundled master, is online.
            password = (data_dir / "console-admin-password").read_text().strip()
            api = Api.login(f"http://127.0.0.1:{port}", password=password)
            try:
                nodes = wait_for(
                    lambda: [n for n in api.get("/nodes") if n["status"] == "online"],
                    60,
                    what="the local agent online",
                )
            finally:
                api.close()
            assert len(nodes) == 1
            exes = {p.info["exe"] for p in processes_of(data_dir, console.parent)}
            assert exes == {
                str(console),
                str(console.with_name("gdos-master")),
                str(console.with_name("gdos-agent")),
            }
            # An empty X screen is one colour; the painted window has text, frames and charts.
            wait_for(lambda: screenshot_colours(display) > 50, 60, 0.5, what="a painted window")

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
            wait_for(lambda: not processes_of(data_dir, console.parent), 30, what="all gone")
        finally:
            for p in [proc, *processes_of(data_dir, console.parent)]:
                with contextlib.suppress(Exception):
                    p.kill()
