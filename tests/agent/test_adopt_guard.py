"""Adoption cannot hit the host: PID 1, kernel threads, the agent and its ancestors are refused
by every strategy, a tree that holds one of them is never signalled, and errors never quote a
file's content. Command-line patterns run on RE2 (linear time). Real processes throughout."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from agent.executor import locate, process, protected
from agent.executor.states import ProcessState
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.messages import AdoptSpec, InstanceSpec
from tests.support import child_env


def pid_file(tmp_path: Path, pid: int) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}.pid"
    path.write_text(f"{pid}\n")
    os.utime(path, (time.time() + 3600,) * 2)  # "written" after the process started
    return path


def kernel_thread() -> int:
    for proc in psutil.process_iter(["ppid"]):
        if proc.info["ppid"] == protected.KTHREADD:
            return proc.pid
    pytest.skip("no kernel threads are visible here")


@pytest.mark.parametrize(
    ("who", "why"),
    [
        (lambda: 1, "PID 1"),
        (os.getpid, "this GDOS agent"),
        (os.getppid, "an ancestor of this GDOS agent"),
        (kernel_thread, "kernel thread"),
    ],
)
def test_a_pid_file_naming_the_host_itself_is_refused(tmp_path: Path, who, why: str):
    path = pid_file(tmp_path, who())
    with pytest.raises(GdosError) as exc:
        locate.from_pid_file(path)
    assert exc.value.code == ErrorCode.FORBIDDEN and why in exc.value.message


def test_scans_never_offer_the_host_itself():
    init = psutil.Process(1).name()
    barred: list[psutil.Process] = []
    found = locate.scan(locate.Matcher(process_name=init), set(), None, barred)
    assert 1 not in [p.pid for p in found] and 1 in [p.pid for p in barred]
    kthread = psutil.Process(kernel_thread())
    barred = []
    found = locate.scan(locate.Matcher(process_name=kthread.name()), set(), None, barred)
    assert kthread.pid not in [p.pid for p in found] and kthread.pid in [p.pid for p in barred]
    # A pattern that matches everything offers none of them.
    everything = {p.pid for p in locate.scan(locate.Matcher(cmdline_pattern="."), set())}
    assert not everything & ({1, os.getpid(), os.getppid()} | {kthread.pid})


def test_a_pid_file_error_never_quotes_the_file(tmp_path: Path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    with pytest.raises(GdosError) as exc:
        locate.from_pid_file(secret)
    assert exc.value.code == ErrorCode.PROCESS_NOT_FOUND
    assert "does not hold a PID" in exc.value.message and "secret" not in exc.value.message
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GdosError) as exc:
        locate.from_pid_file(fifo)  # returns at once: a FIFO is never read
    assert "not a regular file" in exc.value.message


def test_catastrophic_patterns_run_in_linear_time():
    long_line = ["/bin/prog", "a" * 20_000]
    matcher = locate.Matcher(cmdline_pattern="(.|.)*z")
    assert not matcher.matches("prog", long_line)  # Python's re: longer than the universe
    assert locate.Matcher(cmdline_pattern="(a|aa)+$").matches("prog", long_line)
    with pytest.raises(GdosError) as exc:
        locate.Matcher(cmdline_pattern=r"(a)\1").matches("prog", long_line)
    assert exc.value.code == ErrorCode.VALIDATION_FAILED and "RE2" in exc.value.message


ANCESTORS_LEAF = """
import json, os, time
from agent.executor import protected
first, parent = protected.protected_pids(), os.getppid()
print(json.dumps([os.getpid(), sorted(first), protected.protected_pids() is first]), flush=True)
while os.getppid() == parent:  # until its parent is killed
    time.sleep(0.01)
print(json.dumps(sorted(protected.protected_pids())), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="kept only where pidfds tell an exit")
def test_the_ancestors_are_read_once_and_again_after_one_exits():
    """Kept between stops, the set is read again once an ancestor has exited: its PID leaves
    the set (another process may get that PID), and the chain is what it is now (the leaf
    went to PID 1 or to a subreaper among its older ancestors)."""
    shell = subprocess.Popen(
        ["/bin/sh", "-c", '"$0" -c "$1" & wait', sys.executable, ANCESTORS_LEAF],
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    assert shell.stdout is not None
    leaf_pid = None
    try:
        leaf_pid, first, kept = json.loads(shell.stdout.readline())
        assert kept, "read again although no ancestor exited"
        assert {1, leaf_pid, shell.pid, os.getpid()} <= set(first)
        shell.kill()
        shell.wait(10)
        after = set(json.loads(shell.stdout.readline()))
        assert shell.pid not in after and {1, leaf_pid} <= after < set(first)
    finally:
        if leaf_pid is not None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(leaf_pid).kill()


def test_a_tree_holding_the_agent_is_never_signalled():
    me = psutil.Process()
    with pytest.raises(GdosError) as exc:
        protected.guard_tree([me], "svc")
    assert exc.value.code == ErrorCode.FORBIDDEN and "this GDOS agent" in exc.value.message


async def test_stop_refuses_a_tree_the_agent_has_joined(tmp_path: Path, monkeypatch):
    """An adopted process whose tree came to hold a protected process (simulated: its child is
    named protected) is not signalled at all; it stays running and managed."""
    tag = f"guard-{uuid.uuid4().hex[:8]}"
    shell = subprocess.Popen(["/bin/sh", "-c", f"sleep 60 & wait # {tag}"], start_new_session=True)
    try:
        await asyncio.sleep(0.2)
        child = psutil.Process(shell.pid).children()[0]
        state = StateFile(tmp_path / "state.json")
        sup = Supervisor(tmp_path / "work", state, None, lambda r: None)  # type: ignore[arg-type]
        adopt = AdoptSpec(strategy="cmdline", cmdline_pattern=tag)
        await sup.adopt(InstanceSpec(instance_id="a1", name="guarded", adopt=adopt))
        real = protected.protected_pids
        monkeypatch.setattr(protected, "protected_pids", lambda: real() | {child.pid})
        with pytest.raises(GdosError) as exc:
            await sup.stop("a1")
        assert exc.value.code == ErrorCode.FORBIDDEN and str(child.pid) in exc.value.message
        assert shell.poll() is None and child.is_running()
        assert sup.get("a1").state == ProcessState.RUNNING
        monkeypatch.undo()
        await sup.stop("a1")  # once the tree is clear, it stops as usual
        assert sup.get("a1").state == ProcessState.STOPPED
        await sup.close()
    finally:
        shell.kill()
        shell.wait()


def test_a_group_holding_a_protected_process_is_not_signalled_as_a_group(monkeypatch):
    """The leader is signalled on its own; the protected member of its group is left alone."""
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        time.sleep(0.2)
        member = psutil.Process(shell.pid).children()[0]
        assert os.getpgid(member.pid) == shell.pid
        real = protected.protected_pids
        monkeypatch.setattr(protected, "protected_pids", lambda: real() | {member.pid})
        process.signal_tree(process.tree(psutil.Process(shell.pid)), signal.SIGKILL)
        assert shell.wait(10) == -signal.SIGKILL
        assert member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    finally:
        shell.kill()
        shell.wait()
        with contextlib.suppress(psutil.Error):
            member.kill()
