"""The agent's Windows paths, run here with IS_WINDOWS forced on and the OS seam recording:
the commands they would issue, and no POSIX-only call on the way."""

import ast
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agent.executor import process
from agent.executor.states import ProcessState
from agent.executor.supervisor import Managed, Supervisor
from agent.state import StateFile
from protocol.manifest import Manifest
from protocol.messages import InstanceSpec, PackageRef

ROOT = Path(__file__).resolve().parents[2]
# Ignores a polite request the way a console program ignores `taskkill` without /F.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
]


@pytest.fixture
def windows(monkeypatch):
    """IS_WINDOWS on, taskkill recorded instead of run, POSIX process-group calls forbidden."""
    issued: list[list[str]] = []

    def forbidden(*_a, **_k):
        raise AssertionError("a POSIX-only call on the Windows path")

    monkeypatch.setattr(process, "IS_WINDOWS", True)
    monkeypatch.setattr(process, "run_quiet", lambda argv: issued.append(argv) or 0)
    monkeypatch.setattr(os, "killpg", forbidden)
    monkeypatch.setattr(os, "getpgid", forbidden)
    return issued


def test_taskkill_command_names_every_process_and_the_tree():
    assert process.taskkill_command(42, force=False) == ["taskkill", "/PID", "42", "/T"]
    assert process.taskkill_command([42, 43], force=True) == [
        "taskkill",
        "/PID",
        "42",
        "/PID",
        "43",
        "/T",
        "/F",
    ]


def test_spawn_on_windows_leaves_the_agents_job_or_falls_back(monkeypatch, tmp_path):
    seen: list[dict] = []

    class FakePopen:
        def __init__(self, argv, **kwargs):
            seen.append(kwargs)
            if len(seen) == 1:
                raise PermissionError(5, "Access is denied")  # the job forbids breakaway

    monkeypatch.setattr(process, "IS_WINDOWS", True)
    monkeypatch.setattr(process.subprocess, "Popen", FakePopen)
    with open(tmp_path / "out", "wb") as out:
        process.spawn(["app.exe"], tmp_path, {}, out, out)
    first, second = seen
    assert "start_new_session" not in first and "start_new_session" not in second
    assert first["creationflags"] == (
        process.CREATE_NEW_PROCESS_GROUP
        | process.CREATE_NO_WINDOW
        | process.CREATE_BREAKAWAY_FROM_JOB
    )
    assert second["creationflags"] == process.CREATE_NEW_PROCESS_GROUP | process.CREATE_NO_WINDOW


def test_spawn_reports_a_real_permission_error(monkeypatch, tmp_path):
    def denied(argv, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(process.subprocess, "Popen", denied)
    with open(tmp_path / "out", "wb") as out, pytest.raises(PermissionError):
        process.spawn(["app"], tmp_path, {}, out, out)


def test_executable_completes_exe_only_on_windows(monkeypatch, tmp_path):
    (tmp_path / "app.exe").write_bytes(b"MZ")
    assert process.executable(tmp_path / "app") == tmp_path / "app"
    monkeypatch.setattr(process, "IS_WINDOWS", True)
    assert process.executable(tmp_path / "app") == tmp_path / "app.exe"
    (tmp_path / "app").write_bytes(b"#!")
    assert process.executable(tmp_path / "app") == tmp_path / "app"  # an exact name wins


async def test_windows_stop_asks_then_forces_after_the_timeout(windows, tmp_path):
    popen = subprocess.Popen(STUBBORN)
    try:
        ident = process.identity_of(popen.pid)
        assert ident is not None
        sup = Supervisor(tmp_path, StateFile(tmp_path / "state.json"), _no_fetch, lambda r: None)
        m = Managed(
            spec=InstanceSpec(
                instance_id="i-1",
                name="stubborn",
                package=PackageRef(
                    id="p", name="p", version="1", sha256="0" * 64, size=1, url="/x"
                ),
            ),
            manifest=Manifest(name="p", version="1", entrypoint="app.exe", stop_timeout=0.5),
            state=ProcessState.RUNNING,
            pid=ident.pid,
            create_time=ident.create_time,
        )
        m.popen = popen
        sup.watch.begin(m, popen)
        sup.instances[m.id] = m
        t0 = time.monotonic()
        await asyncio.wait_for(sup.stop(m.id), 30)
        assert time.monotonic() - t0 >= 0.5  # the polite request had its stop_timeout
        assert windows == [
            ["taskkill", "/PID", str(popen.pid), "/T"],
            ["taskkill", "/PID", str(popen.pid), "/T", "/F"],
        ]
        assert m.state == ProcessState.STOPPED
        assert popen.poll() is not None  # TerminateProcess (psutil kill) after taskkill /F
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait(10)


async def test_kill_tree_reaches_orphans_whose_parent_is_gone(windows):
    child = subprocess.Popen(STUBBORN)
    try:
        procs = [psutil.Process(child.pid)]
        process.terminate_tree(procs)
        assert windows == [["taskkill", "/PID", str(child.pid), "/T"]]
        assert child.poll() is None  # a request, not a kill
        process.kill_tree(procs)
        assert windows[-1][-1] == "/F"
        assert child.wait(10) is not None
        windows.clear()
        process.kill_tree(procs)  # all gone: nothing is issued for stale PIDs
        assert windows == []
    finally:
        if child.poll() is None:
            child.kill()


# Names that exist (or work) on POSIX only, and the functions allowed to use them because they
# sit behind an IS_WINDOWS / os.name / hasattr guard. A new use elsewhere must be guarded too.
POSIX_ONLY = {
    "killpg",
    "getpgid",
    "getsid",
    "setsid",
    "getuid",
    "geteuid",
    "getloadavg",
    "fchmod",
    "pidfd_open",
    "SIGKILL",
    "start_new_session",
    "add_reader",
    "fork",
}
GUARDED = {
    ("agent/executor/process.py", "signal_trees"): {"killpg", "getpgid"},
    ("agent/executor/process.py", "_pgid"): {"getpgid"},  # only from signal_trees
    ("agent/executor/runas.py", "own_user"): {"geteuid"},  # after `if IS_WINDOWS`
    ("agent/executor/runas.py", "resolve"): {"geteuid"},  # after `if IS_WINDOWS`
    # Only for another account, which resolve() never gives on Windows.
    ("agent/executor/runas.py", "_own"): {"fchmod"},
    ("agent/executor/process.py", "kill_tree"): {"SIGKILL"},
    ("agent/executor/process.py", "popen_options"): {"start_new_session"},
    ("agent/executor/process.py", "_pidfd"): {"pidfd_open"},
    ("agent/executor/protected.py", "watch"): {"pidfd_open"},  # getattr(os, "pidfd_open", None)
    ("agent/executor/process.py", "wait_exit"): {"add_reader"},  # only with a pidfd (Linux)
    ("agent/hostinfo.py", "current_load"): {"getloadavg"},
    ("agent/autostart/system.py", "is_admin"): {"geteuid"},
    ("agent/proc_source.py", "__init__"): {"getsid"},  # getattr(os, "getsid", None)
    ("agent/executor/readopt.py", "_leads_its_session"): {"getsid"},  # hasattr(os, "getsid")
    ("agent/monitor.py", "sample"): {"getloadavg"},  # except AttributeError (Windows)
}


def test_posix_only_calls_stay_behind_their_guards():
    found: dict[tuple[str, str], set[str]] = {}
    for path in sorted((ROOT / "agent").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        for func in [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]:
            for node in ast.walk(func):
                name = None
                if isinstance(node, ast.Attribute):
                    name = node.attr
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    name = node.value
                elif isinstance(node, ast.keyword):
                    name = node.arg
                if name in POSIX_ONLY:
                    found.setdefault((rel, func.name), set()).add(name)
    unexpected = {k: v - GUARDED.get(k, set()) for k, v in found.items()}
    assert {k: v for k, v in unexpected.items() if v} == {}
    assert set(found) == set(GUARDED), "the guarded list names a use that no longer exists"


async def _no_fetch(ref, dest):
    raise AssertionError("no deploy here")
