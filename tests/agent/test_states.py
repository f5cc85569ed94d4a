"""The agent's process state machine: the table refuses what it does not list, BACKOFF goes on
the wire and into the state file as older agents wrote it, and every change the table allows
happens in some real path (walked below with a real supervisor and real child processes)."""

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.executor import states
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.managed import Managed
from agent.executor.states import TRANSITIONS, IllegalTransition, ProcessState
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.messages import InstanceSpec, PackageRef
from protocol.states import InstanceState
from tests.support import build_package, wait_for

S = ProcessState
SLEEP = "#!/bin/sh\nexec sleep 600\n"
NO_SUCH_USER = "gdos-no-such-user"


def _managed(state: ProcessState = S.STOPPED) -> Managed:
    return Managed(spec=InstanceSpec(instance_id="i-1", name="svc"), state=state)


def test_every_change_the_table_does_not_list_is_refused(caplog):
    for old in ProcessState:
        for new in ProcessState:
            m = _managed(old)
            if new == old or new in TRANSITIONS[old]:
                m.change_state(new, error="why")
                assert (m.state, m.error) == (new, "why")
            else:
                with pytest.raises(IllegalTransition):
                    m.change_state(new, error="why")
                assert (m.state, m.error) == (old, None), "a refused change changes nothing"
    caplog.clear()  # each refusal is logged too, on purpose here


def test_outside_tests_an_illegal_change_is_logged_and_made(monkeypatch, caplog):
    monkeypatch.setattr(states, "STRICT", False)
    m = _managed(S.DEPLOYING)
    m.change_state(S.RUNNING)  # a bug; the agent carries on rather than crash
    assert m.state == S.RUNNING
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == f"{states.ILLEGAL} of svc: deploying -> running"
    caplog.clear()  # logged on purpose: not a failure of this test


def test_a_change_is_logged_old_to_new(caplog):
    caplog.set_level(logging.DEBUG, logger="agent.executor.managed")
    m = _managed(S.STOPPED)
    m.change_state(S.STARTING)
    m.change_state(S.STARTING, error=None)  # staying is no change
    assert [r.getMessage() for r in caplog.records] == ["svc: stopped -> starting"]


def test_backoff_is_exited_on_the_wire_and_in_the_state_file():
    m = _managed(S.BACKOFF)
    m.error = "exited with code 1; restarting in 0.5 s"
    assert m.report().state == InstanceState.EXITED
    record = m.record()
    assert (record["state"], record["restart_pending"]) == ("exited", True)
    assert Managed.from_record(record).state == S.BACKOFF
    for state in set(ProcessState) - {S.BACKOFF}:
        record = _managed(state).record()
        assert (record["state"], record["restart_pending"]) == (state.value, False)
        assert Managed.from_record(record).state == state
        assert _managed(state).report().state == InstanceState(state.value)


def test_an_older_agents_state_file_loads_as_it_meant():
    spec = InstanceSpec(instance_id="i-1", name="svc").to_dict()
    waiting = {"spec": spec, "state": "exited", "restart_pending": True}
    assert Managed.from_record(waiting).state == S.BACKOFF
    # A flag left set beside another state meant nothing, and means nothing now.
    assert Managed.from_record({**waiting, "state": "running"}).state == S.RUNNING
    assert Managed.from_record({"spec": spec, "state": "exited"}).state == S.EXITED
    assert Managed.from_record({"spec": spec}).state == S.STOPPED


# -- the walk: every allowed change, made by the supervisor's own paths --------------------------


class Walk:
    """A supervisor's work dir with packages of several restart policies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.zips: dict[str, Path] = {}
        self.ids: set[str] = set()
        self.markers: list[subprocess.Popen[bytes]] = []

    async def fetch(self, ref: PackageRef, dest: Path) -> None:
        if ref.name == "unreachable":
            raise GdosError(ErrorCode.DEPLOY_FAILED, "the store is down")
        shutil.copy(self.zips[ref.name], dest)

    def supervisor(self) -> Supervisor:
        state = StateFile(self.work / "state.json")
        return Supervisor(self.work, state, self.fetch, lambda r: None)

    async def deploy(self, sup: Supervisor, restart: str = "no", limit: int = 5) -> str:
        name = f"{restart}-{limit}"
        if name not in self.zips:
            manifest = {"restart": restart, "restart_limit": limit}
            self.zips[name] = build_package(
                self.root / "pkgs", name=name, manifest=manifest, files={"bin/run": SLEEP}
            )
        return await self.deploy_package(sup, name)

    async def deploy_package(self, sup: Supervisor, package: str) -> str:
        iid = f"walk-{uuid.uuid4().hex[:12]}"
        self.ids.add(iid)
        ref = PackageRef(
            id=package, name=package, version="1.0.0", sha256="0" * 64, size=1, url="/x"
        )
        await sup.deploy(InstanceSpec(instance_id=iid, name=iid, package=ref))
        return iid

    def marked_process(self, iid: str) -> None:
        """A process carrying `iid`'s marker, as if the last agent had started it."""
        env = {**os.environ, ENV_INSTANCE_ID: iid}
        self.markers.append(subprocess.Popen(["sleep", "600"], env=env, start_new_session=True))

    def cleanup(self) -> None:
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if proc.environ().get(ENV_INSTANCE_ID) in self.ids:
                    proc.kill()
        for popen in self.markers:
            popen.kill()
            popen.wait(10)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def crash(sup: Supervisor, iid: str) -> None:
    pid = sup.get(iid).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def zombie(sup: Supervisor, iid: str) -> None:
    """Kill the process and wait, without letting the event loop run, until it is a zombie:
    gone, but its exit event not yet seen by the supervisor."""
    crash(sup, iid)
    pid = sup.get(iid).pid
    assert pid is not None
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10, 0.005)


async def crashed_to(sup: Supervisor, iid: str, state: ProcessState) -> None:
    crash(sup, iid)
    await until(lambda: sup.get(iid).state == state, f"{iid} {state}")


async def test_every_allowed_change_happens_in_some_path(tmp_path: Path, monkeypatch):
    seen: set[tuple[ProcessState, ProcessState]] = set()
    real = Managed.change_state

    def recording(self: Managed, new: ProcessState, **kw: Any) -> None:
        if new != self.state:
            seen.add((self.state, new))
        real(self, new, **kw)

    monkeypatch.setattr(Managed, "change_state", recording)
    walk = Walk(tmp_path)
    try:
        sup = walk.supervisor()
        for path in _COMMAND_PATHS:
            await path(walk, sup)
        table = await _table_the_last_agent_left(walk, sup)
        await sup.close()
        again = walk.supervisor()
        await again.load()
        await _converged_after_load(again, table)
        for iid, m in again.instances.items():
            if m.state == S.RUNNING:
                await again.stop(iid)
        await again.close()
    finally:
        walk.cleanup()
    allowed = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert sorted(f"{old} -> {new}" for old, new in allowed - seen) == [], "made by no path"


async def _deploys(walk: Walk, sup: Supervisor) -> None:
    await walk.deploy(sup)  # deploying -> stopped
    with pytest.raises(GdosError):
        await walk.deploy_package(sup, "unreachable")  # deploying -> failed


async def _stops_and_destroys(walk: Walk, sup: Supervisor) -> None:
    a = await walk.deploy(sup)
    await sup.start(a)  # stopped -> starting -> running
    await sup.stop(a)  # running -> stopping -> stopped
    await sup.destroy(a)  # stopped -> destroying
    b = await walk.deploy(sup)
    await sup.start(b)
    await sup.destroy(b)  # running -> destroying


async def _exits(walk: Walk, sup: Supervisor) -> None:
    a = await walk.deploy(sup)
    await sup.start(a)
    await crashed_to(sup, a, S.EXITED)  # running -> exited
    await sup.start(a)  # exited -> starting
    await crashed_to(sup, a, S.EXITED)
    await sup.stop(a)  # exited -> stopped
    await sup.start(a)
    await crashed_to(sup, a, S.EXITED)
    await sup.destroy(a)  # exited -> destroying


async def _give_ups(walk: Walk, sup: Supervisor) -> None:
    a = await walk.deploy(sup, "on-failure", limit=1)
    await sup.start(a)
    await crashed_to(sup, a, S.FAILED)  # running -> failed
    await sup.stop(a)  # failed -> stopped
    await sup.start(a)
    await crashed_to(sup, a, S.FAILED)
    await sup.start(a)  # failed -> starting
    await crashed_to(sup, a, S.FAILED)
    await sup.destroy(a)  # failed -> destroying


async def _backoffs(walk: Walk, sup: Supervisor) -> None:
    a = await walk.deploy(sup, "on-failure", limit=3)
    await sup.start(a)
    m = sup.get(a)
    crash(sup, a)  # running -> backoff -> starting (at once, the first time) -> running
    await until(lambda: m.restarts == 1 and m.state == S.RUNNING, "the restart")
    await crashed_to(sup, a, S.BACKOFF)  # the second time after a delay
    await sup.stop(a)  # backoff -> exited -> stopped
    await sup.start(a)  # a manual start resets the count
    sup.default_user = NO_SUCH_USER
    # backoff -> failed (the restart cannot begin), failed -> backoff, and in the end it gives up
    crash(sup, a)
    await until(lambda: m.state == S.FAILED and "gave up" in (m.error or ""), "the give-up")
    sup.default_user = None


async def _refused_starts(walk: Walk, sup: Supervisor) -> None:
    a = await walk.deploy(sup)
    b = await walk.deploy(sup)
    await sup.start(b)
    await crashed_to(sup, b, S.EXITED)
    sup.default_user = NO_SUCH_USER
    for iid in (a, b):  # stopped -> failed, exited -> failed
        with pytest.raises(GdosError):
            await sup.start(iid)
    sup.default_user = None
    c = await walk.deploy(sup)
    (sup.instance_dir(c) / "current" / "bin" / "run").unlink()
    with pytest.raises(GdosError):
        await sup.start(c)  # stopped -> starting -> failed


async def _exits_not_seen_yet(walk: Walk, sup: Supervisor) -> None:
    a = await walk.deploy(sup)
    await sup.start(a)
    zombie(sup, a)
    await sup.stop(a)  # running -> stopped
    await sup.start(a)
    zombie(sup, a)
    await sup.start(a)  # running -> starting
    await until(lambda: sup.get(a).state == S.RUNNING, "the new process")
    await sup.stop(a)


_COMMAND_PATHS: list[Callable[[Walk, Supervisor], Awaitable[None]]] = [
    _deploys,
    _stops_and_destroys,
    _exits,
    _give_ups,
    _backoffs,
    _refused_starts,
    _exits_not_seen_yet,
]

# What the last agent's table said, whether a process carrying the marker runs, the restart
# policy, and what the next agent makes of it once it has loaded.
_LOADS: list[tuple[ProcessState, bool, tuple[str, int], ProcessState]] = [
    (S.STOPPED, True, ("no", 5), S.RUNNING),
    (S.STARTING, False, ("no", 5), S.EXITED),
    (S.RUNNING, False, ("on-failure", 5), S.RUNNING),  # exited -> backoff -> restarted
    (S.RUNNING, False, ("on-failure", 1), S.FAILED),  # exited -> failed
    (S.STOPPING, True, ("no", 5), S.RUNNING),
    (S.STOPPING, False, ("no", 5), S.STOPPED),
    (S.EXITED, True, ("no", 5), S.RUNNING),
    (S.BACKOFF, True, ("on-failure", 5), S.RUNNING),
    (S.BACKOFF, False, ("on-failure", 5), S.RUNNING),  # restarted at once
    (S.FAILED, True, ("no", 5), S.RUNNING),
    (S.DESTROYING, False, ("no", 5), S.STOPPED),
]


async def _table_the_last_agent_left(walk: Walk, sup: Supervisor) -> dict[str, ProcessState]:
    """Deploys one instance per case of `_LOADS` and writes the state file as a last agent
    might have left it; returns the state each should reach after the next agent's load."""
    records: dict[str, dict[str, Any]] = {}
    expected: dict[str, ProcessState] = {}
    for saved, alive, (restart, limit), after in _LOADS:
        iid = await walk.deploy(sup, restart, limit)
        m = sup.get(iid)
        records[iid] = Managed(spec=m.spec, manifest=m.manifest, state=saved).record()
        expected[iid] = after
        if alive:
            walk.marked_process(iid)
    for popen in walk.markers:  # a new program's environment is readable a moment after exec
        wait_for(functools.partial(_carries_marker, popen.pid), 10, 0.01)
    table = StateFile(walk.work / "state.json")
    table.instances = records
    await table.save()
    return expected


def _is_in(m: Managed, state: ProcessState) -> bool:
    return m.state == state


def _carries_marker(pid: int) -> bool:
    return ENV_INSTANCE_ID in psutil.Process(pid).environ()


async def _converged_after_load(sup: Supervisor, expected: dict[str, ProcessState]) -> None:
    for iid, state in expected.items():
        await until(functools.partial(_is_in, sup.get(iid), state), f"{iid} {state}")
