import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.executor.managed import Managed
from agent.executor.releases import Release
from agent.executor.states import ProcessState
from agent.slots import CRC, HEADER
from agent.state import StateFile, Unreadable, atomic_write, read_json
from protocol.manifest import Manifest
from protocol.messages import InstanceSpec, PackageRef
from tests.support import ROOT, child_env


def test_atomic_write_mode_and_content(tmp_path):
    p = tmp_path / "s.json"
    atomic_write(p, b'{"a": 1}', mode=0o600)
    assert json.loads(p.read_bytes()) == {"a": 1}
    assert p.stat().st_mode & 0o777 == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["s.json"]


def test_corrupt_state_is_set_aside(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"instances": {')  # a torn write from some older tool
    assert read_json(p) is None
    assert (tmp_path / "s.json.corrupt").exists()


def test_a_state_file_that_cannot_be_read_is_left_alone_and_named(tmp_path, monkeypatch):
    """Unlike a corrupt file, an unreadable one may be a passing fault (a failing disk, a wrong
    owner): setting it aside would make the agent forget all it runs. It stops instead."""
    p = tmp_path / "s.json"
    p.mkdir()  # a folder where the file should be: reading it fails
    with pytest.raises(Unreadable, match=r"cannot read .*s\.json"):
        read_json(p)
    assert p.is_dir() and not (tmp_path / "s.json.corrupt").exists()
    p.rmdir()
    p.write_text('{"instances": {}}')

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(p), "read_bytes", denied)  # root reads anything: fault at the seam
    with pytest.raises(Unreadable, match=r"Permission denied.*left as it is"):
        StateFile(p)
    monkeypatch.undo()
    assert read_json(p) == {"instances": {}}
    slot = tmp_path / ".s.json.slot1"
    slot.mkdir()  # an unreadable slot: named, and left too
    with pytest.raises(Unreadable, match=r"state slots beside .*delete them"):
        StateFile(p)
    assert slot.is_dir() and read_json(p) == {"instances": {}}


async def test_group_commit_saves_every_change(tmp_path):
    p = tmp_path / "state.json"
    state = StateFile(p)
    writes = 0
    real = atomic_write

    def counting(path, data, mode=0o600, durable=True):
        nonlocal writes
        writes += 1
        real(path, data, mode, durable)

    import agent.state as mod

    mod.atomic_write = counting
    try:

        async def change(i: int) -> None:
            state.instances[str(i)] = {"n": i}
            await state.save()

        await asyncio.gather(*(change(i) for i in range(100)))
    finally:
        mod.atomic_write = real
    assert writes < 100, "concurrent saves share writes"
    assert set(json.loads(p.read_bytes())["instances"]) == {str(i) for i in range(100)}
    assert StateFile(p).instances["42"] == {"n": 42}
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))


async def test_the_table_is_built_once_per_write_not_once_per_change(tmp_path):
    """A batch of 100 changes used to rebuild every record on every change (O(n^2): 75 % of
    an agent's CPU in a 100-instance start). Records now come from `collect`, once a write."""
    p = tmp_path / "state.json"
    state = StateFile(p)
    table: dict[str, dict[str, int]] = {}
    built = 0

    def collect() -> dict[str, dict[str, int]]:
        nonlocal built
        built += 1
        return {k: dict(v) for k, v in table.items()}

    state.collect = collect

    async def change(i: int) -> None:
        table[str(i)] = {"n": i}
        await state.save(durable=False)

    await asyncio.gather(*(change(i) for i in range(100)))
    assert 1 <= built < 10, built
    assert StateFile(p).instances == {str(i): {"n": i} for i in range(100)}
    table["7"] = {"n": -7}
    await state.save(durable=False)
    assert StateFile(p).instances["7"] == {"n": -7}, "a later change is written"


async def test_collected_records_are_written_as_their_dicts_and_not_kept(tmp_path):
    """Spec, manifest and releases go into the table as structs (no dict copies kept per
    instance): the file holds what their dicts say, and the instance comes back from it."""
    pkg = PackageRef(id="p", name="s", version="1.0.0", sha256="ab" * 32, size=1, url="/p")
    manifest = Manifest(name="s", version="1.0.0", entrypoint="bin/run", env={"A": "1"})
    m = Managed(
        spec=InstanceSpec(instance_id="i-1", name="svc", package=pkg),
        manifest=manifest,
        state=ProcessState.RUNNING,
        release="1.0.0-abababab",
        releases=(Release("1.0.0-abababab", pkg, manifest),),
    )
    p = tmp_path / "state.json"
    state = StateFile(p)
    state.collect = lambda: {m.id: m.record()}
    await state.save()
    assert state.instances == {}  # nothing kept between writes
    record = json.loads(p.read_bytes())["instances"]["i-1"]
    assert record["spec"] == m.spec.to_dict() and record["manifest"] == manifest.to_dict()
    assert record["releases"] == [
        {"name": "1.0.0-abababab", "package": pkg.to_dict(), "manifest": manifest.to_dict()}
    ]
    loaded = StateFile(p).instances["i-1"]
    back, again = Managed.from_record(loaded), Managed.from_record(loaded)
    assert (back.spec, back.manifest, back.releases) == (m.spec, m.manifest, m.releases)
    # Equal manifests and the instance's own package come back as one object each.
    assert back.manifest is back.releases[0].manifest is again.manifest
    assert back.releases[0].package is back.spec.package


# -- process states in two slots rewritten in place --------------------------------------------


async def _save(state: StateFile, n: int, durable: bool) -> None:
    state.instances["a"] = {"n": n}
    await state.save(durable)


def _loaded(p) -> int:
    return StateFile(p).instances["a"]["n"]


async def _file_then_two_slots(p) -> StateFile:
    """n=1 in the file (durable), then n=2 and n=3 in the slots."""
    state = StateFile(p)
    await _save(state, 1, durable=True)
    await _save(state, 2, durable=False)
    await _save(state, 3, durable=False)
    return state


async def test_process_states_go_to_the_slots_and_the_newest_copy_is_loaded(tmp_path):
    p = tmp_path / "state.json"
    state = await _file_then_two_slots(p)
    assert json.loads(p.read_bytes())["instances"]["a"] == {"n": 1}, "the file: the durable copy"
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        ".state.json.slot0",
        ".state.json.slot1",
        "state.json",
    ]
    assert _loaded(p) == 3
    await _save(state, 4, durable=True)  # newer than both slots
    assert _loaded(p) == 4
    await _save(state, 5, durable=False)
    assert _loaded(p) == 5


def _spoil(slot) -> None:
    """A write cut short: part of the payload is not what the checksum covered."""
    raw = bytearray(slot.read_bytes())
    raw[HEADER.size + CRC.size + 1] ^= 0xFF
    slot.write_bytes(bytes(raw))


def _newest_slot(state: StateFile):
    assert state.slots is not None
    written = [s for s in state.slots.paths if s.exists()]
    return max(written, key=lambda s: HEADER.unpack_from(s.read_bytes())[1])


async def test_a_slot_cut_short_falls_back_to_the_other(tmp_path):
    """An agent killed in the middle of a write leaves that slot half old, half new."""
    p = tmp_path / "state.json"
    state = await _file_then_two_slots(p)
    _spoil(_newest_slot(state))
    assert _loaded(p) == 2
    assert state.slots is not None
    for slot in state.slots.paths:
        slot.write_bytes(b"GDOSSLT2 garbage")
    assert _loaded(p) == 1, "both slots spoilt: the durable copy"


async def test_a_failed_write_never_costs_the_newest_good_copy(tmp_path, monkeypatch):
    """The next write goes to the slot without the last good write, whatever failed between."""
    p = tmp_path / "state.json"
    state = StateFile(p)
    await _save(state, 1, durable=True)
    await _save(state, 2, durable=False)
    await _save(state, 3, durable=False)  # the newest good copy
    real = os.pwrite

    def full_disk(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(OSError):
        await _save(state, 4, durable=False)
    monkeypatch.setattr(os, "pwrite", real)
    await _save(state, 5, durable=False)
    _spoil(_newest_slot(state))  # and the agent is killed in the middle of that one
    assert _loaded(p) == 3


async def test_slots_of_another_history_are_never_read(tmp_path):
    """An older agent (no sequence numbers) rewrote the file after these slots were written,
    or the file was put back by hand: the slots do not follow this file."""
    p = tmp_path / "state.json"
    await _file_then_two_slots(p)
    atomic_write(p, json.dumps({"version": 1, "instances": {"b": {"n": 9}}}).encode())
    fresh = StateFile(p)
    assert fresh.instances == {"b": {"n": 9}}
    fresh.instances["b"] = {"n": 10}
    await fresh.save(durable=False)  # the first save writes the file, with a sequence number
    assert json.loads(p.read_bytes())["instances"] == {"b": {"n": 10}}
    fresh.instances["b"] = {"n": 11}
    await fresh.save(durable=False)
    assert StateFile(p).instances == {"b": {"n": 11}}
    p.unlink()  # a lost file: the slots alone are not trusted either
    assert StateFile(p).instances == {}


async def test_the_next_write_never_lands_on_the_slot_just_loaded(tmp_path):
    """A file put back by hand, with one slot that follows it and a newer one from the history
    since: the slot that follows it is loaded, and the next write must go to the other slot, so
    that a write cut short still leaves what was loaded (not the older file)."""
    p = tmp_path / "state.json"
    state = StateFile(p)
    await _save(state, 1, durable=True)
    await _save(state, 2, durable=False)  # follows the file with n=1
    backup = p.read_bytes()
    await _save(state, 10, durable=True)
    await _save(state, 11, durable=False)  # the newest slot, following the file with n=10
    p.write_bytes(backup)  # put back by hand
    fresh = StateFile(p)
    assert fresh.instances["a"] == {"n": 2}
    await _save(fresh, 3, durable=False)
    _spoil(_newest_slot(fresh))  # that write cut short
    assert _loaded(p) == 2


async def test_a_slot_shorter_than_its_header_says_is_not_read(tmp_path):
    p = tmp_path / "state.json"
    state = StateFile(p)
    await _save(state, 1, durable=True)
    await _save(state, 2, durable=False)
    slot = _newest_slot(state)
    slot.write_bytes(slot.read_bytes()[:-5])
    assert _loaded(p) == 1


async def test_a_shorter_table_after_a_longer_one_reads_back_whole(tmp_path):
    p = tmp_path / "state.json"
    state = StateFile(p)
    await state.save(durable=True)
    state.instances = {str(i): {"n": i} for i in range(200)}
    await state.save(durable=False)
    await state.save(durable=False)
    state.instances = {"a": {"n": 7}}
    await state.save(durable=False)
    await state.save(durable=False)  # both slots now hold the short table over a long tail
    assert StateFile(p).instances == {"a": {"n": 7}}


def _enrolled_work_dir(tmp_path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    cred = {"master": "http://127.0.0.1:9", "node_id": "n1", "node_secret": "s"}
    (work / "agent-credential.json").write_text(json.dumps(cred))
    return work


def _run_agent(work: Path) -> subprocess.CompletedProcess[str]:
    """The agent as a user runs it, up to where it has loaded and saved its state."""
    return subprocess.run(
        [sys.executable, "-m", "agent", "--master", "http://127.0.0.1:9", "--work-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=child_env(),
    )


def test_the_agent_stops_with_a_clear_error_when_its_state_cannot_be_read(tmp_path):
    """Exit 2 and one line naming the file, no traceback, and the state left where it was (it
    used to be set aside, and the agent forgot all it ran)."""
    work = _enrolled_work_dir(tmp_path)
    (work / "agent-state.json").mkdir()
    proc = _run_agent(work)
    assert proc.returncode == 2, proc.stderr
    assert "gdos-agent: cannot read" in proc.stderr and "agent-state.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (work / "agent-state.json").is_dir()
    assert not list(work.glob("*.corrupt"))


def test_the_agent_stops_with_a_clear_error_when_its_state_cannot_be_saved(tmp_path):
    """Exit 1 (a service manager tries again: a full disk passes) and one line, no traceback."""
    work = _enrolled_work_dir(tmp_path)
    (work / ".agent-state.json.tmp").mkdir()  # the durable save's temporary file cannot be made
    proc = _run_agent(work)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"gdos-agent: the agent could not save its state in {work}: Is a directory"
    assert "Traceback" not in proc.stderr
