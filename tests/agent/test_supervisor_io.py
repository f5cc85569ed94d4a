"""The agent's event loop and its state file: writes run on their own thread, and a start is
reported before its state write without losing the service when the agent dies in between.
Real child processes, real files."""

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

import agent.executor.supervisor
import agent.executor.table
import agent.slots
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.readopt import processes_by_marker
from agent.executor.states import ProcessState
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.messages import InstanceReport, InstanceSpec, PackageRef
from protocol.states import InstanceState
from tests.support import build_package, processes_with_env, wait_for

SLEEPER = "import time\nwhile True: time.sleep(1)\n"


async def test_state_writes_never_run_on_the_event_loop(tmp_path: Path, monkeypatch):
    """Writes can wait for the disk (on ext4 beside a busy writer, a rename for seconds):
    neither the durable save nor a process-state save may do it on the loop's thread."""
    written_on: list[int] = []
    for name in ("replace", "pwrite"):
        real = getattr(os, name)

        def spy(*args: object, _real: Callable[..., object] = real) -> object:
            written_on.append(threading.get_ident())
            return _real(*args)

        monkeypatch.setattr(os, name, spy)
    state = StateFile(tmp_path / "state.json")
    state.instances["a"] = {"n": 1}
    await state.save(durable=False)
    state.instances["b"] = {"n": 2}
    await state.save(durable=True)
    assert len(written_on) == 2
    assert threading.get_ident() not in written_on
    assert set(StateFile(tmp_path / "state.json").instances) == {"a", "b"}


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[tuple[Path, InstanceSpec]]:
    """A package and an instance spec; whatever carries the instance's marker is killed after."""
    pkg = build_package(tmp_path / "pkg", name="sleeper", script=SLEEPER)
    ref = PackageRef(id="p", name="sleeper", version="1.0.0", sha256="0" * 64, size=1, url="/x")
    # A unique id: the next agent finds the service by this marker among all processes.
    iid = f"i-{uuid.uuid4().hex[:12]}"
    yield pkg, InstanceSpec(instance_id=iid, name="sleeper-1", package=ref)
    for pid in processes_with_env(ENV_INSTANCE_ID, iid):
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


class Agent(NamedTuple):
    work: Path
    state: StateFile
    sup: Supervisor
    reports: list[InstanceReport]
    fetch: Callable[[PackageRef, Path], Awaitable[None]]


async def _agent_with(tmp_path: Path, pkg: Path, spec: InstanceSpec) -> Agent:
    """A Supervisor on its own work dir, with `spec` deployed (stopped)."""
    work = tmp_path / "work"
    work.mkdir()

    async def fetch(ref: PackageRef, dest: Path) -> None:
        shutil.copy(pkg, dest)

    reports: list[InstanceReport] = []
    state = StateFile(work / "state.json")
    sup = Supervisor(work, state, fetch, reports.append)
    await sup.deploy(spec)
    return Agent(work, state, sup, reports, fetch)


async def test_running_is_reported_before_its_save_and_survives_an_agent_death(
    tmp_path: Path, deployed: tuple[Path, InstanceSpec]
):
    pkg, spec = deployed
    work, state, sup, reports, fetch = await _agent_with(tmp_path, pkg, spec)
    assert StateFile(work / "state.json").instances[spec.instance_id]["state"] == "stopped"

    # The agent "dies" before its state write after the spawn: that write never completes.
    never = asyncio.Event()

    async def stuck_save(durable: bool = True) -> None:
        await never.wait()

    state.save = stuck_save  # type: ignore[method-assign]
    starting = asyncio.create_task(sup.start(spec.instance_id))
    running = await asyncio.wait_for(_first_running(reports), 30)
    pid = running.pid
    assert pid is not None
    starting.cancel()
    await sup.close()
    saved = StateFile(work / "state.json").instances[spec.instance_id]
    assert saved["state"] == InstanceState.STOPPED, "the master heard before the save"

    # The next agent finds the service by its environment marker: running, the same process.
    again = Supervisor(work, StateFile(work / "state.json"), fetch, lambda r: None)
    await again.load()
    m = again.get(spec.instance_id)
    assert (m.state, m.pid) == (ProcessState.RUNNING, pid)
    await again.stop(spec.instance_id)
    assert again.get(spec.instance_id).state == ProcessState.STOPPED
    await again.close()
    wait_for(lambda: not _alive(pid), what="the service gone")


async def _first_running(reports: list[InstanceReport]) -> InstanceReport:
    while True:
        for r in reports:
            if r.state == InstanceState.RUNNING:
                return r
        await asyncio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not hasattr(os, "getsid"), reason="POSIX sessions")
def test_the_marker_scan_takes_the_restarted_service_not_a_child_its_predecessor_left():
    """A service forked a child that outlived it, crashed, and was started again just before the
    agent died (unsaved). Both carry the instance's marker and the child is older; the scan must
    take the service the agent started, the leader of its own session."""
    iid = f"scan-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, ENV_INSTANCE_ID: iid}
    crashed = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        env=env,
        start_new_session=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    child = int(crashed.stdout.split()[0])  # still in the crashed service's session
    restarted = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    try:
        assert psutil.Process(child).create_time() <= psutil.Process(restarted.pid).create_time()
        # Popen returns at exec; the new program's environment is readable a moment later.
        both = sorted([child, restarted.pid])
        wait_for(lambda: sorted(processes_with_env(ENV_INSTANCE_ID, iid)) == both, 30)
        found = processes_by_marker()[iid]
        assert found.pid == restarted.pid, f"took pid {found.pid}, the crashed service's child"
    finally:
        restarted.kill()
        restarted.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


async def test_a_start_whose_save_fails_says_so_and_keeps_the_process(
    tmp_path: Path, deployed: tuple[Path, InstanceSpec], monkeypatch
):
    """A full disk when the state is saved after a spawn: the start answers with a storage
    error that says what happened, the process runs and is reported, and the next save that
    succeeds writes it."""
    pkg, spec = deployed
    work, state, sup, reports, _ = await _agent_with(tmp_path, pkg, spec)

    def full(fd: int, data: bytes, offset: int | None = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(agent.slots, "write_all", full)  # the OS seam of a process-state save
    with pytest.raises(GdosError) as caught:
        await sup.start(spec.instance_id)
    assert caught.value.code == ErrorCode.STORAGE_FULL
    assert caught.value.message.startswith(f"the agent could not save its state in {work}: ")
    assert "No space left on device" in caught.value.message
    m = sup.get(spec.instance_id)
    assert m.state == ProcessState.RUNNING and m.pid is not None and _alive(m.pid)
    assert (await _first_running(reports)).pid == m.pid
    assert StateFile(work / "state.json").instances[spec.instance_id]["state"] == "stopped"

    monkeypatch.undo()
    await state.save(durable=False)  # the next save that succeeds
    saved = StateFile(work / "state.json").instances[spec.instance_id]
    assert (saved["state"], saved["pid"]) == ("running", m.pid)
    await sup.stop(spec.instance_id)
    await sup.close()


async def test_a_stop_whose_process_ends_before_its_save_reports_stopped_once(
    tmp_path: Path, deployed: tuple[Path, InstanceSpec]
):
    """The save of `stopping` runs while the process stops: when the exit comes first, the
    master hears `stopped` once (after that save), not `stopped` twice."""
    pkg, spec = deployed
    work, state, sup, reports, _ = await _agent_with(tmp_path, pkg, spec)
    await sup.start(spec.instance_id)
    m = sup.get(spec.instance_id)
    pid = m.pid
    assert pid is not None
    real_save, gate = state.save, asyncio.Event()

    async def slow_save(durable: bool = True) -> None:
        await gate.wait()
        await real_save(durable)

    state.save = slow_save  # type: ignore[method-assign]
    reports.clear()
    stopping = asyncio.create_task(sup.stop(spec.instance_id))
    while _alive(pid) or m.state != ProcessState.STOPPED:  # the exit seen, the save held
        await asyncio.sleep(0.01)
    assert reports == [], "reported before the save of `stopping`"
    gate.set()
    await asyncio.wait_for(stopping, 30)
    assert [r.state for r in reports] == [InstanceState.STOPPED]
    assert StateFile(work / "state.json").instances[spec.instance_id]["state"] == "stopped"
    await sup.close()


# Asks to stop, then takes a moment to end: the save of `stopping` is long done by the exit.
SLOW_TO_STOP = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(0)))\n"
    "while True: time.sleep(1)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_stopped_is_saved_soon_after_and_an_agent_dying_first_restarts_nothing(
    tmp_path: Path, monkeypatch
):
    """The stops of a burst write `stopped` together, soon after their reports; an agent that
    dies before that write finds `stopping` with the process gone, reads it as stopped, and
    does not restart a service the master was told stopped (its policy restarts on any end)."""
    pkg = build_package(
        tmp_path / "pkg", name="slow", script=SLOW_TO_STOP, manifest={"restart": "always"}
    )
    ref = PackageRef(id="p", name="slow", version="1.0.0", sha256="0" * 64, size=1, url="/x")
    spec = InstanceSpec(instance_id=f"i-{uuid.uuid4().hex[:12]}", name="slow-1", package=ref)
    work, _, sup, reports, fetch = await _agent_with(tmp_path, pkg, spec)
    monkeypatch.setattr(agent.executor.supervisor, "STOPPING_SAID_AFTER", 0.0)
    try:
        await _start_catching_sigterm(sup, spec.instance_id)
        reports.clear()
        await sup.stop(spec.instance_id)
        assert [r.state for r in reports] == [InstanceState.STOPPING, InstanceState.STOPPED]
        saved = lambda: StateFile(work / "state.json").instances[spec.instance_id]["state"]  # noqa: E731
        for _ in range(3000):  # the later save, on this loop
            if saved() == "stopped":
                break
            await asyncio.sleep(0.01)
        assert saved() == "stopped"

        # Again, with the agent dying (kill -9: nothing more runs) before that later save.
        monkeypatch.setattr(agent.executor.table, "SAVE_SOON", 3600.0)
        await _start_catching_sigterm(sup, spec.instance_id)
        await sup.stop(spec.instance_id)
        assert sup.get(spec.instance_id).state == ProcessState.STOPPED
        sup.cancel_background()
        assert saved() == "stopping"
    finally:
        await sup.close()
    again = Supervisor(work, StateFile(work / "state.json"), fetch, lambda r: None)
    await again.load()
    m = again.get(spec.instance_id)
    assert (m.state, m.pid, m.restart_task) == (ProcessState.STOPPED, None, None)
    await asyncio.sleep(0.5)  # a restart, were one scheduled, would start now
    assert processes_with_env(ENV_INSTANCE_ID, spec.instance_id) == []
    # A clean shutdown writes the pending save before it ends.
    try:
        await _start_catching_sigterm(again, spec.instance_id)
        await again.stop(spec.instance_id)
        assert saved() == "stopping"
    finally:
        await again.close()
    assert saved() == "stopped"


async def _start_catching_sigterm(sup: Supervisor, instance_id: str) -> None:
    """Start, then wait until the service has set its SIGTERM handler (its start-up done)."""
    await sup.start(instance_id)
    pid = sup.get(instance_id).pid
    for _ in range(3000):
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the service never set its SIGTERM handler")


async def test_a_quick_stop_is_reported_stopped_alone(
    tmp_path: Path, deployed: tuple[Path, InstanceSpec], monkeypatch
):
    """`stopping` is said only of a stop still under way a while after its save: the master
    wrote it already when it asked, so a stop that ends before says `stopped` alone."""
    monkeypatch.setattr(agent.executor.supervisor, "STOPPING_SAID_AFTER", 3600.0)
    pkg, spec = deployed
    made = await _agent_with(tmp_path, pkg, spec)
    sup, reports = made.sup, made.reports
    await sup.start(spec.instance_id)
    reports.clear()
    await sup.stop(spec.instance_id)
    assert [r.state for r in reports] == [InstanceState.STOPPED]
    await sup.close()
