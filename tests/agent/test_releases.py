"""Releases on the node, with a real supervisor and real child processes: each version in its own
folder beside the others, an atomic `current` pointer, a prepare that stops nothing, a switch
that stops, points and starts, kept releases (no download to go back), shared paths and the data
folder kept across releases, the state file as the truth after a crash, the old `app/` layout
moved in place, per-start settings and `${VAR}`."""

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from agent.executor import releases
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.states import ProcessState
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.archive import sha256_file
from protocol.errors import ErrorCode, GdosError
from protocol.messages import InstanceSpec, PackageRef, Settings
from protocol.states import HealthState
from tests.support import build_package, free_port, port_open

S = ProcessState

# Each version says which it is in the shared folder and its data folder, then sleeps.
RUN = """#!/bin/sh
echo {version} >> ../uploads/written-by
echo {version} >> "$GDOS_DATA_DIR/versions"
echo "$GDOS_INSTANCE_INDEX" > "$GDOS_DATA_DIR/index"
exec sleep 600
"""

# A service on the port its arguments name (packages built with run=None).
SERVE = """import http.server, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
print("serving", port, os.environ.get("GDOS_INSTANCE_INDEX"), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler).serve_forever()
"""


class Node:
    """A supervisor's work dir and the packages it can fetch (counted: a rollback fetches none)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.refs: dict[str, PackageRef] = {}
        self.zips: dict[str, Path] = {}
        self.fetched: list[str] = []
        self.ids: list[str] = []

    def package(
        self,
        version: str,
        keep: int = 3,
        run: str | None = RUN,
        files: dict[str, str | bytes] | None = None,
        **manifest: object,
    ) -> None:
        """Package `version` of "svc"; `run` is its bin/run (None: tests.support's, running
        `script` with this Python)."""
        body = {"shared_paths": ["uploads/", "conf/local.yaml"], "keep_releases": keep}
        body.update(manifest)
        entries: dict[str, str | bytes] = {"conf/local.yaml": f"written by the package {version}\n"}
        if run is not None:
            entries["bin/run"] = run.replace("{version}", version)
        entries.update(files or {})
        script = str(body.pop("script", SERVE))
        path = build_package(
            self.root / "pkgs", "svc", version, manifest=body, files=entries, script=script
        )
        self.zips[version] = path
        self.refs[version] = PackageRef(
            id=f"p-{version}",
            name="svc",
            version=version,
            sha256=sha256_file(path),
            size=path.stat().st_size,
            url="/x",
        )

    async def fetch(self, ref: PackageRef, dest: Path) -> None:
        self.fetched.append(ref.version)
        await asyncio.to_thread(shutil.copy, self.zips[ref.version], dest)

    def supervisor(self) -> Supervisor:
        return Supervisor(
            self.work, StateFile(self.work / "state.json"), self.fetch, lambda r: None
        )

    async def deploy(self, sup: Supervisor, version: str, **spec: object) -> str:
        iid = f"rel-{uuid.uuid4().hex[:10]}"
        self.ids.append(iid)
        await sup.deploy(
            InstanceSpec(instance_id=iid, name=iid, package=self.refs[version], **spec)  # type: ignore[arg-type]
        )
        return iid

    def record(self, iid: str) -> dict:
        """The instance's record as an agent starting now would read it."""
        return StateFile(self.work / "state.json").instances[iid]

    def cleanup(self) -> None:
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if proc.environ().get(ENV_INSTANCE_ID) in self.ids:
                    proc.kill()


@pytest.fixture
def node(tmp_path: Path):
    n = Node(tmp_path)
    yield n
    n.cleanup()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def on_disk(sup: Supervisor, iid: str) -> list[str]:
    return sorted(p.name for p in (sup.instance_dir(iid) / "releases").iterdir())


def cwd_of(pid: int | None) -> Path:
    assert pid is not None
    return Path(psutil.Process(pid).cwd())


async def test_a_deploy_is_a_release_with_current_pointing_at_it(node: Node):
    node.package("1.0.0")
    sup = node.supervisor()
    iid = await node.deploy(sup, "1.0.0")
    inst = sup.instance_dir(iid)
    name = f"1.0.0-{node.refs['1.0.0'].sha256[:8]}"
    assert on_disk(sup, iid) == [name]
    assert os.readlink(inst / "current") == f"releases/{name}"
    assert releases.read_pointer(inst) == name
    assert (inst / "data").is_dir() and not (inst / "app").exists()
    record = node.record(iid)
    assert record["release"] == name and [r["name"] for r in record["releases"]] == [name]
    await sup.start(iid)
    m = sup.get(iid)
    assert cwd_of(m.pid) == inst / "releases" / name / "bin"  # the release itself, not the link
    assert m.report().version == "1.0.0" and m.report().release == name
    # Shared paths live outside the release, linked into it; the first package's copy starts them.
    assert os.path.islink(inst / "releases" / name / "uploads")
    assert (inst / "shared" / "conf" / "local.yaml").read_text() == "written by the package 1.0.0\n"
    await until(lambda: (inst / "shared" / "uploads" / "written-by").exists(), "the service")
    await sup.stop(iid)
    await sup.close()


async def test_prepare_stops_nothing_and_switch_moves_the_instance_keeping_its_folders(node: Node):
    for v in ("1.0.0", "1.0.1"):
        node.package(v)
    sup = node.supervisor()
    iid = await node.deploy(sup, "1.0.0")
    inst = sup.instance_dir(iid)
    await sup.start(iid)
    m = sup.get(iid)
    first_pid = m.pid
    assert first_pid is not None
    await until(lambda: (inst / "data" / "versions").exists(), "1.0.0 up")
    (inst / "shared" / "conf" / "local.yaml").write_text("the operator's own\n")

    name, fetched = await sup.prepare(iid, node.refs["1.0.1"])
    assert fetched and name == f"1.0.1-{node.refs['1.0.1'].sha256[:8]}"
    assert m.pid == first_pid and m.state == S.RUNNING and psutil.pid_exists(first_pid)
    assert m.release != name and len(on_disk(sup, iid)) == 2
    assert await sup.prepare(iid, node.refs["1.0.1"]) == (name, False), "idempotent"
    assert node.fetched == ["1.0.0", "1.0.1"]

    before = await sup.switch(iid, node.refs["1.0.1"])
    assert before is not None and before.startswith("1.0.0-")
    assert m.state == S.RUNNING and m.pid != first_pid and not psutil.pid_exists(first_pid)
    assert cwd_of(m.pid) == inst / "releases" / name / "bin"
    assert (m.release, m.previous, m.report().version) == (name, before, "1.0.1")
    assert releases.read_pointer(inst) == name and node.record(iid)["release"] == name
    await until(lambda: (inst / "data" / "versions").read_text().count("\n") == 2, "1.0.1 up")
    assert (inst / "data" / "versions").read_text() == "1.0.0\n1.0.1\n"
    assert (inst / "shared" / "uploads" / "written-by").read_text() == "1.0.0\n1.0.1\n"
    assert (inst / "releases" / name / "conf" / "local.yaml").read_text() == "the operator's own\n"

    # Back to the kept release: nothing fetched; the same switch again changes nothing.
    assert await sup.switch(iid, node.refs["1.0.0"]) == name
    assert m.report().version == "1.0.0" and node.fetched == ["1.0.0", "1.0.1"]
    pid = m.pid
    assert await sup.switch(iid, node.refs["1.0.0"]) is None and m.pid == pid
    await sup.stop(iid)
    await sup.close()


async def test_a_stopped_instance_only_switches_and_an_unprepared_release_is_refused(node: Node):
    for v in ("1.0.0", "1.0.1", "1.0.2"):
        node.package(v)
    sup = node.supervisor()
    iid = await node.deploy(sup, "1.0.0")
    await sup.prepare(iid, node.refs["1.0.1"])
    await sup.switch(iid, node.refs["1.0.1"])
    m = sup.get(iid)
    assert m.state == S.STOPPED and m.pid is None and m.report().version == "1.0.1"
    with pytest.raises(GdosError) as info:
        await sup.switch(iid, node.refs["1.0.2"])
    assert info.value.code == ErrorCode.NOT_FOUND and "not prepared" in info.value.message
    assert m.report().version == "1.0.1"
    await sup.switch(iid, node.refs["1.0.0"], start=True)  # asked to start: it does
    assert sup.get(iid).state == S.RUNNING and m.report().version == "1.0.0"
    await sup.stop(iid)
    await sup.close()


async def test_keep_releases_on_disk_never_the_current_or_the_previous(node: Node):
    for v in ("1", "2", "3", "4"):
        node.package(v, keep=2)
    sup = node.supervisor()
    iid = await node.deploy(sup, "1")
    short = {v: f"{v}-{node.refs[v].sha256[:8]}" for v in node.refs}
    for v in ("2", "3"):
        await sup.prepare(iid, node.refs[v])
        await sup.switch(iid, node.refs[v])
    assert on_disk(sup, iid) == [short["2"], short["3"]]
    await sup.switch(iid, node.refs["2"])  # a rollback: both are kept, nothing fetched
    assert on_disk(sup, iid) == [short["2"], short["3"]] and node.fetched == ["1", "2", "3"]
    await sup.prepare(iid, node.refs["4"])
    assert len(on_disk(sup, iid)) == 3, "a prepared release waits for its switch"
    await sup.switch(iid, node.refs["4"])
    assert on_disk(sup, iid) == [short["2"], short["4"]], "current and previous stay"
    assert [r["name"] for r in node.record(iid)["releases"]] == [short["2"], short["4"]]
    await sup.close()


async def test_keep_releases_1_still_keeps_the_previous_release(node: Node):
    for v in ("1", "2"):
        node.package(v, keep=1)
    sup = node.supervisor()
    iid = await node.deploy(sup, "1")
    await sup.prepare(iid, node.refs["2"])
    await sup.switch(iid, node.refs["2"])
    assert len(on_disk(sup, iid)) == 2
    await sup.close()


async def test_the_state_file_is_the_truth_after_a_crash(node: Node):
    for v in ("1", "2"):
        node.package(v)
    sup = node.supervisor()
    iid = await node.deploy(sup, "1")
    inst = sup.instance_dir(iid)
    await sup.prepare(iid, node.refs["2"])
    await sup.switch(iid, node.refs["2"])
    want = sup.get(iid).release
    assert want is not None
    await sup.close()
    # Killed after the state was written, before the pointer moved, and during another prepare.
    old = next(n for n in on_disk(sup, iid) if n != want)
    releases.write_pointer(inst, old)
    (inst / "releases" / "3-0badc0de.tmp" / "bin").mkdir(parents=True)
    (inst / "releases" / ".3-0badc0de.zip").write_bytes(b"part")
    (inst / "releases" / "3-0badc0de").mkdir()  # unpacked, never recorded
    (inst / ".current.tmp").symlink_to("releases/3-0badc0de")

    again = node.supervisor()
    await again.load()
    assert releases.read_pointer(inst) == want
    assert sorted(on_disk(again, iid)) == sorted([old, want])
    assert not (inst / ".current.tmp").exists() and not (inst / ".current.tmp").is_symlink()
    await again.start(iid)
    assert cwd_of(again.get(iid).pid) == inst / "releases" / want / "bin"
    await again.stop(iid)
    await again.close()


async def test_an_old_app_layout_moves_into_releases_while_it_runs(node: Node):
    node.package("1", run=RUN.replace("../uploads/", "$GDOS_DATA_DIR/"), shared_paths=[])
    sup = node.supervisor()
    iid = await node.deploy(sup, "1")
    await sup.close()
    # Make it what an agent before releases left: `app/`, a record without releases, running.
    inst = sup.instance_dir(iid)
    name = releases.read_pointer(inst)
    assert name is not None
    os.replace(inst / "releases" / name, inst / "app")
    (inst / "current").unlink()
    shutil.rmtree(inst / "releases")
    env = {**os.environ, ENV_INSTANCE_ID: iid, "GDOS_DATA_DIR": str(inst / "data")}
    popen = subprocess.Popen(
        [str(inst / "app" / "bin" / "run")],
        cwd=inst / "app" / "bin",
        env=env,
        start_new_session=True,
    )
    await until(lambda: psutil.Process(popen.pid).name() == "sleep", "the old service")
    table = json.loads((node.work / "state.json").read_text())
    record = table["instances"][iid]
    for key in ("release", "previous_release", "releases"):
        record.pop(key)
    record.update(
        state="running", pid=popen.pid, create_time=psutil.Process(popen.pid).create_time()
    )
    table["seq"] += 100
    (node.work / "state.json").write_text(json.dumps(table))
    for slot in node.work.glob(".state.json.slot*"):
        slot.unlink()

    again = node.supervisor()
    await again.load()
    m = again.get(iid)
    assert m.state == S.RUNNING and m.pid == popen.pid and popen.poll() is None, "not stopped"
    assert m.release == name and (inst / "releases" / name / "bin" / "run").is_file()
    assert releases.read_pointer(inst) == name and os.readlink(inst / "app") == "current"
    assert node.record(iid)["release"] == name
    await again.stop(iid)
    popen.wait(10)
    await again.start(iid)
    assert cwd_of(again.get(iid).pid) == inst / "releases" / name / "bin"
    await again.stop(iid)
    await again.close()


async def test_settings_and_variables_come_with_the_start(node: Node):
    node.package(
        "1",
        run=None,
        args=["--port", "${PORT}"],
        health={"tcp": "${PORT}", "interval": 0.2},
        shared_paths=[],
    )
    sup = node.supervisor()
    iid = await node.deploy(sup, "1")
    m = sup.get(iid)
    with pytest.raises(GdosError) as info:
        await sup.start(iid)
    assert info.value.code == ErrorCode.START_FAILED
    assert (
        "${PORT}" in info.value.message
        and "not in the instance's environment" in info.value.message
    )
    assert m.state == S.FAILED and "${PORT}" in (m.error or "")

    port = free_port()
    await sup.start(iid, Settings(env={"PORT": str(port)}, index=2))
    await until(lambda: port_open(port), "the service on its own port")
    await until(lambda: m.health == HealthState.HEALTHY, "the probe on ${PORT}")
    assert psutil.Process(m.pid).environ()["GDOS_INSTANCE_INDEX"] == "2"
    assert node.record(iid)["spec"]["env"] == {"PORT": str(port)}, "kept for its restarts"
    await sup.stop(iid)
    await sup.close()


async def test_a_pointer_file_where_symlinks_need_a_privilege(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(releases, "SYMLINKS", False)
    inst = tmp_path / "i"
    (inst / "releases" / "1-aaaaaaaa").mkdir(parents=True)
    (inst / "releases" / "2-bbbbbbbb").mkdir()
    releases.write_pointer(inst, "1-aaaaaaaa")
    assert (inst / "current").read_text() == "1-aaaaaaaa" and not (inst / "current").is_symlink()
    releases.tidy(inst, {"1-aaaaaaaa", "2-bbbbbbbb"}, "2-bbbbbbbb")
    assert releases.read_pointer(inst) == "2-bbbbbbbb"


def test_prune_keeps_current_and_previous_and_drops_the_least_recently_used():
    ref = PackageRef(id="p", name="s", version="1", sha256="0" * 64, size=1, url="/x")
    from protocol.manifest import Manifest

    man = Manifest(name="s", version="1", entrypoint="bin/run")
    rs = tuple(releases.Release(n, ref, man) for n in ("a", "b", "c", "d"))
    kept, dropped = releases.prune(rs, 2, {"a", "d"})
    assert [r.name for r in kept] == ["a", "d"] and [r.name for r in dropped] == ["b", "c"]
    kept, dropped = releases.prune(rs, 1, {"c", "d"})
    assert [r.name for r in kept] == ["c", "d"]
    assert releases.prune(rs, 5, set()) == (rs, [])


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


async def test_a_full_disk_during_unpack_leaves_the_running_release(node: Node, small_disk: Path):
    node.package("1")
    # Compressible (a small download) but 16 MiB unpacked: more than the disk holds.
    blob = bytearray(16 << 20)
    blob[::64] = os.urandom(len(blob[::64]))
    node.package("2", files={"blob": bytes(blob)})
    node.work = small_disk / "work"
    node.work.mkdir()
    sup = node.supervisor()
    iid = await node.deploy(sup, "1")
    await sup.start(iid)
    m = sup.get(iid)
    pid = m.pid
    assert pid is not None
    with pytest.raises(GdosError) as info:
        await sup.prepare(iid, node.refs["2"])
    assert info.value.code == ErrorCode.STORAGE_FULL and "disk" in info.value.message
    assert m.state == S.RUNNING and m.pid == pid and psutil.pid_exists(pid)
    assert m.report().version == "1" and on_disk(sup, iid) == [m.release]
    await sup.stop(iid)
    await sup.close()


async def test_instances_preparing_one_package_together_download_it_once(node: Node):
    for v in ("1", "2"):
        node.package(v)
    sup = node.supervisor()
    ids = [await node.deploy(sup, "1") for _ in range(3)]
    assert node.fetched == ["1", "1", "1"], "one after another: each its own download"
    # "Together" means all three ask while the download is in flight: hold the download until
    # the third has asked, or a loaded machine may finish it before the last one gets there.
    asked = 0
    all_asked = asyncio.Event()
    get, fetch = sup.downloads.get, sup.downloads.fetch

    async def counting_get(ref: PackageRef, dest: Path) -> None:
        nonlocal asked
        asked += 1
        if asked == len(ids):
            all_asked.set()
        await get(ref, dest)

    async def held_fetch(ref: PackageRef, dest: Path) -> None:
        await asyncio.wait_for(all_asked.wait(), 30)
        await fetch(ref, dest)

    sup.downloads.get, sup.downloads.fetch = counting_get, held_fetch  # type: ignore[method-assign]
    await asyncio.gather(*(sup.prepare(iid, node.refs["2"]) for iid in ids))
    assert node.fetched == ["1", "1", "1", "2"], "together: one download"
    assert all(len(on_disk(sup, iid)) == 2 for iid in ids)
    assert not any((node.work / ".downloads").iterdir()), "the shared file is gone"
    await sup.close()
