"""The sampler: children summed into their instance (real processes), only new PIDs inspected,
vanished and reused PIDs handled."""

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from agent.executor import process
from agent.executor.managed import Managed
from agent.executor.states import ProcessState
from agent.monitor import Roots, encode
from agent.proc_source import STAT_EVERY, ProcfsSource, PsutilSource, Stat
from agent.sampler import IO_EVERY, LIST_EVERY, Root, Sampler
from protocol.messages import AGENT_MESSAGE, InstanceSpec, Metrics
from tests.support import wait_for

BURN = """\
import sys, time
ballast = bytearray(40 << 20)  # touched: 40 MB resident
t = time.process_time()
while time.process_time() - t < 0.4:
    pass
open(sys.argv[1], "w").close()
time.sleep(120)
"""
# Starts a burner and exits at once: the burner is orphaned but stays in the session.
ORPHANER = """\
import subprocess, sys
subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]])
"""
ROOT = """\
import subprocess, sys, time
d = sys.argv[1]
subprocess.Popen([sys.executable, d + "/burn.py", d + "/a.done"])
subprocess.Popen([sys.executable, d + "/orphaner.py", d + "/burn.py", d + "/b.done"]).wait()
subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for: a zombie
time.sleep(120)
"""

THREADED = "import threading, time; threading.Thread(target=time.sleep, args=(120,)).start()"

SOURCES = [ProcfsSource, PsutilSource] if sys.platform.startswith("linux") else [PsutilSource]


def spawn_family(tmp_path: Path):
    for name, text in (("burn.py", BURN), ("orphaner.py", ORPHANER), ("root.py", ROOT)):
        (tmp_path / name).write_text(text)
    with open(tmp_path / "out.log", "ab") as out:
        popen = process.spawn(
            [sys.executable, str(tmp_path / "root.py"), str(tmp_path)],
            tmp_path,
            dict(os.environ),
            out,
            out,
        )
    ident = process.identity_of(popen.pid)
    assert ident is not None
    return popen, Root("inst-1", ident.pid, ident.create_time)


def kill_session(popen) -> None:
    os.killpg(popen.pid, 9)
    popen.wait()


@pytest.mark.parametrize("source", SOURCES)
def test_children_are_summed_into_their_instance(tmp_path, source):
    outsider = psutil.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    popen, root = spawn_family(tmp_path)
    sampler = Sampler(source())
    try:
        last = time.time()
        assert sampler.sample([root], last) is None  # the priming tick has no rates yet
        counted_cpu = 0.0
        rows: list = []
        deadline = last + 60
        done = False
        while time.time() < deadline:
            time.sleep(0.3)
            now = time.time()
            rows = sampler.sample([root], now) or []
            counted_cpu += sum(r[1] for r in rows) / 100 * (now - last)
            last = now
            if done:
                break
            done = (tmp_path / "a.done").exists() and (tmp_path / "b.done").exists()
        assert done, "the burners did not finish"

        [(iid, _cpu, rss, read_bps, write_bps, threads)] = rows
        tracked = sampler.tracked_pids
        procs = [psutil.Process(pid) for pid in tracked]
        burners = [p for p in procs if "burn.py" in " ".join(p.cmdline())]
        assert iid == "inst-1"
        assert root.pid in tracked and len(burners) == 2 and len(tracked) == 3
        assert any(p.ppid() not in tracked for p in burners), "the orphan is still counted"
        assert outsider.pid not in tracked and os.getpid() not in tracked
        assert rss >= 80 << 20  # both burners' ballast
        assert threads >= 3
        assert read_bps >= 0 and write_bps >= 0
        # Two burners spent 0.4 s of CPU each (plus interpreter start-up): all of it was seen.
        spent = sum(sum(p.cpu_times()[:2]) for p in procs)
        assert 0.76 <= counted_cpu <= spent + 0.1, (counted_cpu, spent)
    finally:
        kill_session(popen)
        outsider.kill()
        outsider.wait()


def test_vanished_processes_are_dropped_quietly(tmp_path):
    popen, root = spawn_family(tmp_path)
    sampler = Sampler()
    try:
        # The family is complete once the last child (never waited for) is a zombie.
        wait_for(
            lambda: any(
                c.status() == psutil.STATUS_ZOMBIE for c in psutil.Process(popen.pid).children()
            ),
            what="the root's last child",
        )
        sampler.sample([root])
        time.sleep(0.5)
        sampler.sample([root])
        children = [pid for pid in sampler.tracked_pids if pid != root.pid]
        assert children
        for pid in children:
            psutil.Process(pid).kill()
        time.sleep(0.3)
        rows = sampler.sample([root])
        assert rows is not None and [r[0] for r in rows] == ["inst-1"]
        assert set(sampler.tracked_pids) == {root.pid}
    finally:
        kill_session(popen)
    assert sampler.sample([root]) == []  # the root is gone too: no row, no error
    assert sampler.sample([]) == []


class FakeSource:
    """The OS seam: a process table the test edits, counting what the sampler reads."""

    def __init__(self) -> None:
        self.table: dict[int, Stat] = {}
        self.io_table: dict[int, tuple[int, int]] = {}
        self.stat_calls: list[int] = []
        self.io_calls: list[int] = []
        self.listings = 0

    def pids(self):
        self.listings += 1
        return list(self.table)

    def stat(self, pid: int) -> Stat | None:
        self.stat_calls.append(pid)
        return self.table.get(pid)

    inspect = stat

    def io(self, pid: int):
        self.io_calls.append(pid)
        return self.io_table.get(pid, (0, 0))

    def forget(self, pid: int) -> None:
        pass


def test_only_new_pids_are_inspected_and_a_reused_pid_starts_over():
    src = FakeSource()
    src.table = {pid: (1, pid, 100.0, 0.0, 1000, 1) for pid in range(2, 500)}  # strangers
    src.table[700] = (1, 700, 100.0, 5.0, 4096, 2)  # the instance's main process
    root = Root("i", 700, 100.0)
    sampler = Sampler(src)
    sampler.sample([root], now=1000.0)
    assert sampler.inspected == 499

    src.table[700] = (1, 700, 100.0, 5.5, 4096, 2)
    rows = sampler.sample([root], now=1001.0)
    assert sampler.inspected == 499  # nothing new: nobody inspected again
    assert rows == [("i", 50.0, 4096, 0, 0, 2)]

    src.table[701] = (700, 700, 1001.5, 0.2, 2048, 1)  # a child born during the tick
    src.table[700] = (1, 700, 100.0, 6.0, 4096, 2)
    rows = sampler.sample([root], now=1002.0)
    assert sampler.inspected == 500  # only the newcomer
    assert rows == [("i", 70.0, 6144, 0, 0, 3)]  # its whole 0.2 s of CPU counts

    # PID 701 ends and a stranger takes the number: its counters must not be taken as ours.
    src.table[701] = (1, 9, 1002.5, 30.0, 999, 1)
    src.table[700] = (1, 700, 100.0, 6.0, 4096, 2)
    rows = sampler.sample([root], now=1003.0)
    assert rows == [("i", 0.0, 4096, 0, 0, 2)]
    assert set(sampler.tracked_pids) == {700}
    sampler.sample([root], now=1004.0)
    assert sampler.inspected == 501 and set(sampler.tracked_pids) == {700}  # a stranger now


def test_the_table_is_listed_after_a_change_and_a_fork_counts_in_its_own_tick():
    src = FakeSource()
    src.table = {pid: (1, pid, 100.0, 0.0, 1000, 1) for pid in range(2, 50)}  # strangers
    src.table[700] = (1, 700, 100.0, 5.0, 4096, 1)
    root = Root("i", 700, 100.0)
    sampler = Sampler(src)
    sampler.sample([root], now=1000.0)
    listed = src.listings
    for tick in range(1, LIST_EVERY):  # nothing followed changes: the table is not read
        assert sampler.sample([root], now=1000.0 + tick) == [("i", 0.0, 4096, 0, 0, 1)]
    assert src.listings == listed
    sampler.sample([root], now=1000.0 + LIST_EVERY)  # read all the same now and then
    assert src.listings == listed + 1

    # The root forks: its text changes, the table is read and the child counted at once.
    src.table[700] = (1, 700, 100.0, 5.1, 4096, 1)
    src.table[701] = (700, 700, 1005.5, 0.3, 2048, 1)
    rows = sampler.sample([root], now=1000.0 + LIST_EVERY + 1)
    assert src.listings == listed + 2
    assert rows == [("i", 40.0, 6144, 0, 0, 2)]
    assert set(sampler.tracked_pids) == {700, 701}


def test_io_of_a_quiet_process_is_read_now_and_then_and_nothing_is_lost():
    src = FakeSource()
    src.table[700] = (1, 700, 100.0, 5.0, 4096, 1)
    src.io_table[700] = (0, 0)
    root = Root("i", 700, 100.0)
    sampler = Sampler(src)
    sampler.sample([root], now=1000.0)
    src.io_calls.clear()
    # It writes without its stat text changing (less CPU than the kernel's tick).
    src.io_table[700] = (0, 8192)
    written = 0
    for tick in range(1, IO_EVERY + 1):
        rows = sampler.sample([root], now=1000.0 + tick)
        assert rows is not None
        written += rows[0][4]
    assert len(src.io_calls) == 1  # once in IO_EVERY ticks
    assert written == 8192  # the whole write, in the tick that read it
    # A process that runs has its io read every tick.
    for tick in range(IO_EVERY + 1, IO_EVERY + 4):
        src.table[700] = (1, 700, 100.0, 5.0 + tick, 4096, 1)
        src.io_table[700] = (0, 8192 + tick)
        sampler.sample([root], now=1000.0 + tick)
    assert len(src.io_calls) == 4


def test_roots_are_rebuilt_only_for_instances_whose_process_changed():
    def managed(iid: str, pid: int | None, state: ProcessState) -> Managed:
        m = Managed(spec=InstanceSpec(instance_id=iid, name=iid), state=state)
        m.pid, m.create_time = pid, (100.0 if pid else None)
        return m

    sup = SimpleNamespace(
        instances={
            "a": managed("a", 10, ProcessState.RUNNING),
            "b": managed("b", 11, ProcessState.STARTING),
            "c": managed("c", None, ProcessState.STOPPED),
        }
    )
    roots = Roots()
    first = roots.of(sup)
    assert first == [Root("a", 10, 100.0), Root("b", 11, 100.0)]
    again = roots.of(sup)
    assert all(x is y for x, y in zip(first, again, strict=True))
    sup.instances["b"].pid = 12  # restarted
    sup.instances["a"].state = ProcessState.EXITED
    assert roots.of(sup) == [Root("b", 12, 100.0)]


def test_the_encoded_message_is_what_the_master_parses():
    text = encode(1000.5, 1.0, (12.5, 40.0, 71.0, 1200, 800, 0.5), [("i", 3.2, 4096, 0, 10, 4)])
    msg = AGENT_MESSAGE.decode(text)
    assert isinstance(msg, Metrics)
    assert msg.node == (12.5, 40.0, 71.0, 1200, 800, 0.5)
    assert msg.instances == [("i", 3.2, 4096, 0, 10, 4)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_procfs_keeps_a_process_files_open_until_it_is_forgotten():
    child = psutil.Popen(["sleep", "120"])
    src = ProcfsSource()
    try:
        wait_for(lambda: child.status() == psutil.STATUS_SLEEPING, what="the child asleep")
        open_before = len(os.listdir("/proc/self/fd"))
        first = src.stat(child.pid)
        assert first is not None and first[0] == os.getpid()
        assert src.io(child.pid) is not None
        # stat and io kept; schedstat too, the process having one thread
        assert len(os.listdir("/proc/self/fd")) == open_before + 3
        # A sleeping process's text does not change: the same tuple comes back, unparsed.
        assert src.stat(child.pid) is first
        # Only the texts' hashes are kept between reads, not the texts (memory at 1,000).
        kept = src._files[child.pid]
        assert not any(isinstance(getattr(kept, name), bytes) for name in kept.__slots__)
        # The kept file reads as gone once the process has ended, even before its PID is
        # reused (and so whatever holds the number by then).
        child.kill()
        child.wait()
        assert src.stat(child.pid) is None and src.io(child.pid) is None
        src.forget(child.pid)
        assert len(os.listdir("/proc/self/fd")) == open_before
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_procfs_rereads_the_stat_of_a_one_thread_sleeper_only_now_and_then(monkeypatch):
    sleeper = psutil.Popen(["sleep", "120"])
    threaded = psutil.Popen([sys.executable, "-c", THREADED])
    src = ProcfsSource()
    reads: list[str] = []
    pread = os.pread

    def counting(fd: int, n: int, at: int) -> bytes:
        reads.append(os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        return pread(fd, n, at)

    try:
        wait_for(lambda: sleeper.status() == psutil.STATUS_SLEEPING, what="the sleeper asleep")
        wait_for(lambda: threaded.num_threads() == 2, what="the second thread")
        monkeypatch.setattr(os, "pread", counting)
        for _ in range(2):  # the baselines
            first = src.stat(sleeper.pid)
            assert src.stat(threaded.pid) is not None
        reads.clear()
        for _ in range(2 * (STAT_EVERY + 1)):
            assert src.stat(sleeper.pid) is first  # nothing changed: the same tuple
        assert reads.count("stat") == 2 and reads.count("schedstat") == 2 * (STAT_EVERY + 1)
        reads.clear()
        for _ in range(3):  # with two threads, schedstat cannot tell: stat every time
            assert src.stat(threaded.pid) is not None
        assert reads == ["stat"] * 3
    finally:
        for p in (sleeper, threaded):
            p.kill()
            p.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_procfs_without_room_for_kept_files_reads_each_time(monkeypatch):
    monkeypatch.setattr("agent.proc_source.RESERVED_FDS", 1 << 30)  # no room at all
    child = psutil.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    src = ProcfsSource()
    try:
        open_before = len(os.listdir("/proc/self/fd"))
        assert src.stat(child.pid) is not None and src.io(child.pid) is not None
        assert src.stat(child.pid) is not None
        assert len(os.listdir("/proc/self/fd")) == open_before
    finally:
        child.kill()
        child.wait()
    assert src.stat(child.pid) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_instance_is_active_only_while_its_processes_change():
    """What log rotation asks before it looks at an instance's logs."""
    quiet = psutil.Popen(["sleep", "120"])
    busy = psutil.Popen([sys.executable, "-c", "while True: pass"])
    try:
        wait_for(lambda: quiet.status() == psutil.STATUS_SLEEPING, what="the sleeper asleep")
        roots = [Root(name, p.pid, p.create_time()) for name, p in (("q", quiet), ("b", busy))]
        sampler = Sampler(ProcfsSource())
        sampler.sample(roots)
        since = time.time()

        def busy_seen() -> bool:
            time.sleep(0.2)
            sampler.sample(roots)
            return sampler.active_at["b"] >= since

        wait_for(busy_seen, timeout=30, what="the busy loop seen running")
        assert sampler.active_at["q"] < since
    finally:
        for p in (quiet, busy):
            p.kill()
            p.wait()
