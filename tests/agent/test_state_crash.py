"""Crash safety of the state file, for real: every write cut at every byte, and an agent process
killed with SIGKILL in the middle of its saves, round after round, each resuming from what the
one before it left."""

import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import agent.slots
import agent.state
from agent.slots import SUPPORTED
from agent.state import StateFile

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="the slots need os.pwrite (POSIX)")

REPO = Path(__file__).resolve().parents[2]


def _table(step: int, size: int) -> dict[str, dict[str, Any]]:
    """A table of `size` records, each naming the step that wrote it, so a mix of two is seen."""
    return {str(i): {"s": step} for i in range(size)}


def _load(p: Path) -> dict[str, dict[str, Any]]:
    """What an agent started now would find; loading never sets a file aside as corrupt."""
    fresh = StateFile(p)
    try:
        assert not any(x.name.endswith(".corrupt") for x in p.parent.iterdir())
        return fresh.instances
    finally:
        fresh._io.shutdown()  # thousands of loads: one idle thread each otherwise


def _slot_of(state: StateFile, fd: int) -> Path:
    assert state.slots is not None
    return next(
        s for s in state.slots.paths if s.exists() and os.path.samestat(os.fstat(fd), s.stat())
    )


async def _cut_slot_write_at_every_byte(
    state: StateFile, p: Path, new: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> int:
    """Save `new` as a process state, but capture the bytes instead of writing them; then for
    every cut 0..len, put the slot back as it was, write only that prefix over it (what an agent
    killed in the middle of the write leaves) and load. Then the real write. Returns the cuts."""
    previous = json.loads(json.dumps(state.instances))
    captured: list[tuple[int, bytes, int | None]] = []
    with monkeypatch.context() as m:
        m.setattr(
            agent.slots,
            "write_all",
            lambda fd, data, offset=None: captured.append((fd, data, offset)),
        )
        state.instances = new
        await state.save(durable=False)
    assert len(captured) == 1, "a process state is one write, into a slot"
    fd, data, offset = captured[0]
    assert offset == 0
    slot = _slot_of(state, fd)
    before = slot.read_bytes()
    wfd = os.open(slot, os.O_WRONLY)
    try:
        for cut in range(len(data) + 1):
            if cut:  # one more byte of the write; no truncate, no rewrite: cheap on a busy disk
                assert os.pwrite(wfd, data[cut - 1 : cut], cut - 1) == 1
            on_disk = slot.read_bytes()
            assert on_disk == data[:cut] + before[cut:]
            # The new table is whole on disk at the full cut, and before it only if what the
            # slot held already ended as the new bytes do (the same tail: `"seq":n,"version":1}`).
            whole = on_disk[: len(data)] == data
            assert whole or cut < len(data)
            assert _load(p) == (new if whole else previous), (cut, len(data))
    finally:
        os.close(wfd)
    agent.slots.write_all(fd, data, offset)  # the write as it really happens
    assert _load(p) == new
    return len(data) + 1


async def _cut_file_write_at_every_byte(
    state: StateFile, p: Path, new: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> int:
    """The same for a durable save: the temporary file written up to every byte (up to all of
    it, synced), and the agent killed before the rename."""
    previous = json.loads(json.dumps(state.instances))
    tmp = p.with_name(f".{p.name}.tmp")
    captured: list[tuple[Path, bytes]] = []
    with monkeypatch.context() as m:
        m.setattr(
            agent.state, "atomic_write", lambda path, data, **kw: captured.append((path, data))
        )
        state.instances = new
        await state.save(durable=True)
    assert len(captured) == 1 and captured[0][0] == p, "a durable save is one write, of the file"
    data = captured[0][1]
    wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # as atomic_write opens it
    try:
        for cut in range(len(data) + 1):
            if cut:
                assert os.write(wfd, data[cut - 1 : cut]) == 1
            assert tmp.read_bytes() == data[:cut]
            assert _load(p) == previous, (cut, len(data))
        assert _load(p) == previous  # all of it written: the agent killed before the rename
    finally:
        os.close(wfd)
    agent.state.atomic_write(p, data)  # over the leftover temporary file, as a restart would
    assert _load(p) == new
    assert not tmp.exists()
    return len(data) + 1


async def test_a_write_cut_at_any_byte_loads_the_table_before_it_or_the_new_one(
    tmp_path, monkeypatch, caplog
):
    """Writes of every kind (growing, shrinking, the same length, durable, the first after a
    restart), each cut at every byte: a fresh load finds the table before it, or the new one
    when all of its bytes are on disk, never an older table, a mix or an error."""
    caplog.set_level(logging.ERROR, logger="agent.state")
    # A kill, not a power loss: what reaches the disk itself changes nothing a load sees, and
    # thousands of loads need not wait on a busy disk's syncs.
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    p = tmp_path / "state.json"
    state = StateFile(p)
    state.instances = _table(0, 3)
    await state.save(durable=True)
    for step, size in enumerate([20, 2, 30], start=1):  # both slots hold a write, of other sizes
        state.instances = _table(step, size)
        await state.save(durable=False)
    cuts = 0
    restart = None  # the agent restarts: its first write then is cut
    plan: list[tuple[int, bool] | None] = [
        (40, False),  # grows past both slots
        (1, False),  # shrinks: a long stale tail behind it
        (1, False),
        (1, False),  # the same length as the slot it overwrites, and the same last bytes
        restart,  # the first write must avoid the newest slot, and come after both
        (15, False),
        (5, True),  # durable: the temporary file cut, never renamed
        (25, False),  # the first after the file: the other slot follows an older file
        restart,  # one slot follows the file, the other an older one
        (4, False),  # now the other slot holds the previous table
        (4, False),
        (10, True),
        restart,  # no slot follows the file
        (10, True),  # a durable save after a durable save
        (1, False),
    ]
    saved = _table(3, 30)
    for step, write in enumerate(plan, start=10):
        if write is restart:
            state._io.shutdown()
            state = StateFile(p)
            assert state.instances == saved
            continue
        size, durable = write
        cut = _cut_file_write_at_every_byte if durable else _cut_slot_write_at_every_byte
        saved = _table(step, size)
        cuts += await cut(state, p, saved, monkeypatch)
    assert cuts > 2000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class _Cut(OSError):
    pass


async def test_a_durable_write_cut_short_is_never_renamed_over_the_file(tmp_path, monkeypatch):
    """Through the real atomic_write: the temporary file's write stops halfway (the agent dies
    there, or the disk is full), and the file and the slot saved before it stand."""
    p = tmp_path / "state.json"
    state = StateFile(p)
    state.instances = _table(0, 30)
    await state.save(durable=True)
    state.instances = _table(1, 20)
    await state.save(durable=False)
    before = p.read_bytes()
    real = agent.state.write_all

    def half(fd: int, data: bytes, offset: int | None = None) -> None:
        real(fd, data[: len(data) // 2], offset)
        raise _Cut("killed here")

    monkeypatch.setattr(agent.state, "write_all", half)
    state.instances = _table(2, 40)
    with pytest.raises(_Cut):
        await state.save(durable=True)
    monkeypatch.undo()
    tmp = p.with_name(f".{p.name}.tmp")
    with pytest.raises(ValueError):
        json.loads(tmp.read_bytes())  # the temporary file holds half a table
    assert p.read_bytes() == before
    assert _load(p) == _table(1, 20)
    state.instances = _table(3, 10)
    await state.save(durable=False)  # after a failed file write, the file is written again
    assert _load(p) == _table(3, 10)
    await state.save(durable=True)  # the file, whole this time
    assert not tmp.exists()
    state.instances = _table(4, 5)
    await state.save(durable=False)
    assert _load(p) == _table(4, 5)


async def test_a_durable_write_that_fails_after_its_rename_loses_no_later_save(
    tmp_path, monkeypatch
):
    """The rename happened, then the directory's fsync failed: the save raised, yet the file
    on disk is the new one. Process states saved after it, each reported done, must be what a
    restart finds (the slots used to name the file before, and were passed over for it)."""
    p = tmp_path / "state.json"
    state = StateFile(p)
    state.instances = _table(0, 3)
    await state.save(durable=True)
    real = os.fsync

    def no_dir_sync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", no_dir_sync)
    state.instances = _table(1, 4)
    with pytest.raises(OSError):
        await state.save(durable=True)
    monkeypatch.undo()
    assert _load(p) == _table(1, 4), "renamed before the failure"
    for step in (2, 3, 4):  # each reported done, then the agent is killed
        state.instances = _table(step, step)
        await state.save(durable=False)
        assert _load(p) == _table(step, step)


# -- an agent process killed in the middle of its saves ------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, random, sys
    from pathlib import Path

    from agent.state import StateFile

    async def main() -> None:
        path, seed, stop_after = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
        rnd = random.Random(seed)
        state = StateFile(path)
        n = state.instances["counter"]["n"] if state.instances else 0
        out = sys.stdout
        out.write(f"start {n}\\n")
        out.flush()
        for _ in range(stop_after if stop_after >= 0 else 10**9):
            n += 1
            # Mostly small tables, sometimes a few pages (a write the kill may cut between pages).
            size = rnd.randrange(60) if rnd.random() < 0.8 else rnd.randrange(100, 400)
            table = {"counter": {"n": n, "size": size}}
            table.update({f"pad{i}": {"n": n, "i": i} for i in range(size)})
            state.instances = table
            durable = rnd.random() < 0.1
            await state.save(durable=durable)
            out.write(f"{n} {'durable' if durable else 'slot'}\\n")
            out.flush()
        await asyncio.sleep(3600)  # killed here

    asyncio.run(main())
    """
)


def _counter(p: Path) -> int:
    """The counter of the table a fresh load finds, checked whole: every record of its save."""
    table = _load(p)
    if not table:
        return 0
    counter = table.pop("counter")
    assert table == {f"pad{i}": {"n": counter["n"], "i": i} for i in range(counter["size"])}
    return int(counter["n"])


def _lines(out: Path, child: subprocess.Popen[bytes]) -> list[str]:
    text = out.read_text()
    assert child.poll() is None, (
        f"the child ended: {child.stderr.read().decode() if child.stderr else ''}"
    )
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


def test_an_agent_killed_at_any_moment_loses_no_save_it_reported(tmp_path):
    """30 rounds: an agent process saves a counter in a loop, mostly process states and now and
    then a durable save, and is killed with SIGKILL: at a random moment in its saves, or right
    after its k-th save since it started (k = 0..3: a restart's first writes), or early, maybe
    while it is still loading. Every counter it reported saved is found by the next load, whole; the next
    round's agent resumes from there, so the slots' and the file's histories interleave."""
    rnd = random.Random(20240607)
    p = tmp_path / "state.json"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    loaded = 0
    saves = durables = 0
    for round_no in range(30):
        kind = ("moment", "moment", "moment", "after", "after", "early")[round_no % 6]
        stop_after = rnd.randrange(4) if kind == "after" else -1
        out = tmp_path / f"out{round_no}.txt"
        with out.open("wb") as out_file:
            child = subprocess.Popen(
                [sys.executable, str(script), str(p), str(rnd.randrange(1 << 30)), str(stop_after)],
                stdout=out_file,
                stderr=subprocess.PIPE,
                cwd=REPO,
                env=env,
            )
        try:
            deadline = time.monotonic() + 60  # generous: a loaded machine, a slow fsync
            if kind == "early":
                time.sleep(rnd.uniform(0, 0.15))
            else:
                want = 1 + max(stop_after, 0)  # "start", then the saves it stops after
                while len(_lines(out, child)) < want:
                    assert time.monotonic() < deadline, "the child did not get that far"
                    time.sleep(0.002)
                if kind == "moment":
                    time.sleep(rnd.uniform(0, 0.04))
        finally:
            child.send_signal(signal.SIGKILL)
            status = child.wait(timeout=60)
            stderr = child.stderr.read().decode() if child.stderr else ""
            if child.stderr:
                child.stderr.close()
        assert status == -signal.SIGKILL, stderr
        lines = out.read_text().splitlines()
        reported = loaded  # what the child found, then each counter it reported saved
        if lines:
            assert lines[0] == f"start {loaded}", "the child loaded what the last load found"
            for line in lines[1:]:
                n, how = line.split()
                assert int(n) == reported + 1
                reported = int(n)
                saves += 1
                durables += how == "durable"
        if kind == "after":
            assert reported == loaded + stop_after
        loaded = _counter(p)
        # Every save reported is on disk; beyond it, at most the one save the kill interrupted
        # (none when the child was killed waiting, after its last save).
        in_flight = 0 if kind == "after" else 1
        assert reported <= loaded <= reported + in_flight, (round_no, kind, reported, loaded)
    assert saves >= 100 and durables >= 3, "the kills landed in the middle of real saves"
    fresh = StateFile(p)
    assert fresh.slots is not None and all(s.exists() for s in fresh.slots.paths)
    fresh._io.shutdown()
