"""Process handling at the OS seam: identity, exit events, whole-tree stops."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from agent.executor import process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# A parent that starts a grandchild in the same group, and one that ignores SIGTERM.
FAMILY = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)",
]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
]


def spawn(argv, tmp_path):
    with open(tmp_path / "out.log", "ab") as out:
        return process.spawn(argv, tmp_path, dict(os.environ), out, out)


def test_spawn_runs_in_its_own_session(tmp_path):
    p = spawn(SLEEPER, tmp_path)
    try:
        assert os.getsid(p.pid) == p.pid
        assert os.getpgid(p.pid) == p.pid
    finally:
        p.kill()
        p.wait()


def test_identity_refuses_a_reused_pid(tmp_path):
    p = spawn(SLEEPER, tmp_path)
    try:
        real = process.identity_of(p.pid)
        assert real is not None and process.find(real) is not None
        imposter = process.Identity(p.pid, real.create_time - 1000)  # same PID, other process
        assert process.find(imposter) is None
    finally:
        p.kill()
        p.wait()


def test_an_own_child_is_found_until_it_ends_and_is_reaped_then(tmp_path):
    """The agent's own child is told alive or ended by a wait call: an ended one is not found
    (and is reaped then), whatever /proc still shows of it."""
    p = spawn(SLEEPER, tmp_path)
    ident = process.identity_of(p.pid)
    assert ident is not None
    try:
        found = process.find(ident, p)
        assert found is not None and found.pid == p.pid
        os.kill(p.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not yet reaped
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.01)
        assert process.find(ident, p) is None
        assert p.returncode == -signal.SIGKILL
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()


async def test_wait_exit_is_an_event_for_children_and_strangers(tmp_path):
    p = spawn([sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(7)"], tmp_path)
    ident = process.identity_of(p.pid)
    t0 = time.monotonic()
    code = await asyncio.wait_for(process.wait_exit(ident, p), 10)
    assert code == 7
    assert time.monotonic() - t0 < 5
    # A process we did not start (no Popen): the exit is noticed, the code is unknown.
    other = subprocess.Popen(SLEEPER)
    try:
        ident = process.identity_of(other.pid)
        waiter = asyncio.create_task(process.wait_exit(ident, None))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        other.kill()
        other.wait()  # reaped by its parent (this test); the agent only watches
        assert await asyncio.wait_for(waiter, 10) is None
    finally:
        if other.poll() is None:
            other.kill()


async def test_sigterm_reaches_the_whole_tree(tmp_path):
    p = spawn(FAMILY, tmp_path)
    proc = psutil.Process(p.pid)
    children = await _children(proc)
    procs = process.tree(proc)
    process.signal_tree(procs, signal.SIGTERM)
    left = await process.wait_gone(procs, 10)
    p.wait(5)
    assert left == []
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


async def test_stubborn_process_needs_sigkill(tmp_path):
    p = spawn(STUBBORN, tmp_path)
    await _wait_ready(tmp_path)
    procs = process.tree(psutil.Process(p.pid))
    process.signal_tree(procs, signal.SIGTERM)
    left = await process.wait_gone(procs, 0.5)
    assert left, "it ignores SIGTERM"
    process.signal_tree(left, signal.SIGKILL)
    assert await process.wait_gone(left, 10) == []
    assert p.wait(5) == -signal.SIGKILL


def test_windows_tree_stop_command():
    assert process.taskkill_command(42, force=False) == ["taskkill", "/PID", "42", "/T"]
    assert process.taskkill_command(42, force=True)[-1] == "/F"


async def _children(proc: psutil.Process) -> list[psutil.Process]:
    for _ in range(100):
        kids = proc.children(recursive=True)
        if kids:
            return kids
        await asyncio.sleep(0.05)
    pytest.fail("the grandchild never appeared")


async def _wait_ready(tmp_path):
    for _ in range(200):
        if b"ready" in (tmp_path / "out.log").read_bytes():
            return
        await asyncio.sleep(0.05)
    pytest.fail("child never got ready")


async def test_tree_lists_children_and_grandchildren(tmp_path):
    p = spawn(FAMILY, tmp_path)
    try:
        proc = psutil.Process(p.pid)
        kids = await _children(proc)
        assert [x.pid for x in process.tree(proc)] == [p.pid, *[k.pid for k in kids]]
        # The same answer through the fallback that scans every process.
        assert process._direct_children(p.pid) is not None
        assert process._children_map()[p.pid] == [k.pid for k in kids]
    finally:
        process.signal_tree(process.tree(psutil.Process(p.pid)), signal.SIGKILL)
        p.wait(5)
