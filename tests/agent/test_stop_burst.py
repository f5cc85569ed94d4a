"""The stops decided in one turn of the agent's event loop (a batch) send their SIGTERMs back to
back, once every tree is read, rather than each as it is decided. Real processes."""

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.executor import process
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.states import ProcessState
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.messages import InstanceSpec, PackageRef
from tests.support import build_package, processes_with_env

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")

SLEEPER = "import time\nwhile True: time.sleep(1)\n"
N = 3


@pytest.fixture
def specs() -> Iterator[list[InstanceSpec]]:
    ref = PackageRef(id="p", name="sleeper", version="1.0.0", sha256="0" * 64, size=1, url="/x")
    tag = uuid.uuid4().hex[:10]
    made = [
        InstanceSpec(instance_id=f"i-{tag}-{i}", name=f"sleeper-{i}", package=ref) for i in range(N)
    ]
    yield made
    for spec in made:
        for pid in processes_with_env(ENV_INSTANCE_ID, spec.instance_id):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


async def _running(tmp_path: Path, specs: list[InstanceSpec]) -> Supervisor:
    pkg = build_package(tmp_path / "pkg", name="sleeper", script=SLEEPER)
    work = tmp_path / "work"
    work.mkdir()

    async def fetch(ref: PackageRef, dest: Path) -> None:
        shutil.copy(pkg, dest)

    sup = Supervisor(work, StateFile(work / "state.json"), fetch, lambda r: None)
    for spec in specs:
        await sup.deploy(spec)
    await asyncio.gather(*(sup.start(s.instance_id) for s in specs))
    return sup


async def test_a_batch_stop_reads_every_tree_before_its_first_signal(
    tmp_path: Path, specs: list[InstanceSpec], monkeypatch
):
    sup = await _running(tmp_path, specs)
    events: list[str] = []
    real_tree, real_killpg = process.tree, os.killpg

    def tree(proc: psutil.Process) -> list[psutil.Process]:
        events.append("read")
        return real_tree(proc)

    def killpg(pgid: int, sig: int) -> None:
        events.append("signal")
        real_killpg(pgid, sig)

    monkeypatch.setattr(process, "tree", tree)
    monkeypatch.setattr(os, "killpg", killpg)
    await asyncio.wait_for(asyncio.gather(*(sup.stop(s.instance_id) for s in specs)), 30)
    assert events == ["read"] * N + ["signal"] * N
    assert all(sup.get(s.instance_id).state == ProcessState.STOPPED for s in specs)
    await sup.close()


async def test_a_stop_cancelled_in_its_burst_leaves_the_others_signalled(
    tmp_path: Path, specs: list[InstanceSpec]
):
    """A stop cancelled while it waits for its burst leaves the burst and the others whole."""
    sup = await _running(tmp_path, specs)
    pids = [sup.get(s.instance_id).pid for s in specs]
    stops = [asyncio.create_task(sup.stop(s.instance_id)) for s in specs]
    await asyncio.sleep(0)  # every stop has read its tree and waits for the burst
    stops[0].cancel()
    await asyncio.wait_for(asyncio.gather(*stops[1:]), 30)
    assert all(sup.get(s.instance_id).state == ProcessState.STOPPED for s in specs[1:])
    pid = pids[0]  # the cancelled stop's process had its signal too
    assert pid is not None
    await asyncio.wait_for(_gone(pid), 30)
    with contextlib.suppress(asyncio.CancelledError):
        await stops[0]
    await sup.close()


async def _gone(pid: int) -> None:
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        await asyncio.sleep(0.01)
