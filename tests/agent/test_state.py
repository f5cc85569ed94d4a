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
    saved = json.loads(p.read_bytes())
    assert saved["version"] == 1
    assert saved["instances"] == {str(i): {"n": i} for i in range(100)}
    table["7"] = {"n": -7}
    await state.save(durable=False)
    assert json.loads(p.read_bytes())["instances"]["7"] == {"n": -7}, "a later change is written"
