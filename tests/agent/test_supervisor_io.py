"""The agent's event loop during a batch: state writes run on their own thread, spawns start no
thread, and a start is reported before its state write without losing the service when the
agent dies in between. Real child processes, real files."""

import asyncio
import os
import shutil
import sys
import threading
from pathlib import Path

import psutil
import pytest

from agent.executor import process
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.messages import InstanceReport, InstanceSpec, PackageRef
from protocol.states import InstanceState
from tests.support import build_package, wait_for

SLEEPER = "import time\nwhile True: time.sleep(1)\n"


async def test_state_writes_never_run_on_the_event_loop(tmp_path: Path, monkeypatch):
    """A rename over the old file can block for long on ext4 (it starts writing the new file
    out first): neither the durable nor the plain write may do it on the loop's thread."""
    renamed_on: list[int] = []
    real = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renamed_on.append(threading.get_ident())
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    state = StateFile(tmp_path / "state.json")
    state.instances["a"] = {"n": 1}
    await state.save(durable=False)
    state.instances["b"] = {"n": 2}
    await state.save(durable=True)
    assert len(renamed_on) == 2
    assert threading.get_ident() not in renamed_on
    assert set(StateFile(tmp_path / "state.json").instances) == {"a", "b"}


async def test_a_batch_of_spawns_starts_no_thread(tmp_path: Path):
    """`Thread.start()` waits for the new thread to run; on a saturated host that blocked the
    loop for most of a second, so the agent starts its spawn threads before any batch."""
    process.start_spawn_threads()
    before = {t.ident for t in threading.enumerate()}
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    log = tmp_path / "out.log"
    popens = await asyncio.gather(
        *(
            process.spawn_logged(argv, tmp_path, dict(os.environ), log, log)
            for _ in range(process.SPAWN_THREADS)
        )
    )
    try:
        assert {t.ident for t in threading.enumerate()} == before
        assert all(p.poll() is None for p in popens)
    finally:
        for p in popens:
            p.kill()
            p.wait()


@pytest.fixture
def deployed(tmp_path: Path) -> tuple[Path, InstanceSpec]:
    pkg = build_package(tmp_path / "pkg", name="sleeper", script=SLEEPER)
    ref = PackageRef(id="p", name="sleeper", version="1.0.0", sha256="0" * 64, size=1, url="/x")
    return pkg, InstanceSpec(instance_id="i1", name="sleeper-1", package=ref)


async def test_running_is_reported_before_its_save_and_survives_an_agent_death(
    tmp_path: Path, deployed: tuple[Path, InstanceSpec]
):
    pkg, spec = deployed
    work = tmp_path / "work"
    work.mkdir()

    async def fetch(ref: PackageRef, dest: Path) -> None:
        shutil.copy(pkg, dest)

    reports: list[InstanceReport] = []
    state = StateFile(work / "state.json")
    sup = Supervisor(work, state, fetch, reports.append)
    await sup.deploy(spec)
    assert StateFile(work / "state.json").instances["i1"]["state"] == InstanceState.STOPPED

    # The agent "dies" before its state write after the spawn: that write never completes.
    never = asyncio.Event()

    async def stuck_save(durable: bool = True) -> None:
        await never.wait()

    state.save = stuck_save  # type: ignore[method-assign]
    starting = asyncio.create_task(sup.start("i1"))
    running = await asyncio.wait_for(_first_running(reports), 30)
    pid = running.pid
    assert pid is not None
    starting.cancel()
    await sup.close()
    try:
        saved = StateFile(work / "state.json").instances["i1"]
        assert saved["state"] == InstanceState.STOPPED, "the master heard before the save"

        # The next agent finds the service by its environment marker: running, the same process.
        again = Supervisor(work, StateFile(work / "state.json"), fetch, lambda r: None)
        await again.load()
        m = again.get("i1")
        assert (m.state, m.pid) == (InstanceState.RUNNING, pid)
        await again.stop("i1")
        assert again.get("i1").state == InstanceState.STOPPED
        await again.close()
    finally:
        if psutil.pid_exists(pid):
            psutil.Process(pid).kill()
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
