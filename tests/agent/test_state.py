import asyncio
import json
import os

from agent.state import StateFile, atomic_write, read_json


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


async def test_group_commit_saves_every_change(tmp_path):
    p = tmp_path / "state.json"
    state = StateFile(p)
    writes = 0
    real = atomic_write

    def counting(path, data, mode=0o600):
        nonlocal writes
        writes += 1
        real(path, data, mode)

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
