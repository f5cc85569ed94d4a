"""Service logs on the agent: only declared files are readable, resolved safely on every read;
rotation by copytruncate keeps a bounded size while the service keeps writing; following."""

import asyncio
import os
import sys
from pathlib import Path

import msgspec
import pytest

from agent import logrotate
from agent.executor import process
from agent.executor.states import ProcessState
from agent.executor.supervisor import Managed, Supervisor
from agent.flags import parse_log_roots
from agent.logs import AgentLogs, LogFile, check_log_roots, declared, describe, find, tail
from agent.state import StateFile
from protocol.errors import GdosError
from protocol.manifest import LogRotate, Manifest
from protocol.messages import FollowLog, InstanceSpec, ListLogs, LogChunk, PackageRef, TailLog

SECRET = "root:x:0:0:the secret\n"
APP = "releases/1-00000000"  # the current release's folder of the instance `inst`


def manifest(**kw) -> Manifest:
    return Manifest(name="svc", version="1", entrypoint="bin/run", **kw)


@pytest.fixture
def inst(tmp_path: Path) -> Path:
    d = tmp_path / "work" / "i1"
    (d / "logs").mkdir(parents=True)
    (d / APP / "logs").mkdir(parents=True)
    (d / "logs" / "stdout.log").write_text("out line\n")
    (d / "logs" / "stderr.log").write_text("err line\n")
    (d / APP / "logs" / "access.log").write_text("GET /\n")
    (tmp_path / "secret.txt").write_text(SECRET)
    return d


def refused(entry: LogFile) -> str:
    with pytest.raises(GdosError) as info:
        tail(entry, 1000)
    assert info.value.code == "forbidden", info.value.message
    return info.value.message


def test_declared_logs_in_order_and_only_by_name(inst: Path, tmp_path: Path):
    m = manifest(log_paths={"Access Log": "logs/access.log", "Sys": str(tmp_path / "sys.log")})
    logs = declared(inst, inst / APP, m)
    assert [e.name for e in logs] == ["stdout", "stderr", "Access Log", "Sys"]
    assert tail(find(logs, "stdout"), 100)[0] == b"out line\n"
    assert tail(find(logs, "Access Log"), 100)[0] == b"GET /\n"
    for name in ("..", "../../secret.txt", str(tmp_path / "secret.txt"), "stdout.log", ""):
        with pytest.raises(GdosError) as info:
            find(logs, name)
        assert info.value.code == "not_found"


def test_tail_returns_the_end(inst: Path):
    out = inst / "logs" / "stdout.log"
    out.write_bytes(b"".join(b"line %05d\n" % i for i in range(10_000)))
    data, size, start = tail(declared(inst, inst / APP, None)[0], 25)
    assert data == b"97\nline 09998\nline 09999\n" and size == out.stat().st_size
    assert start == size - 25


def test_a_log_swapped_for_a_symlink_is_refused(inst: Path, tmp_path: Path):
    out = inst / "logs" / "stdout.log"
    out.unlink()
    out.symlink_to(tmp_path / "secret.txt")
    assert "symbolic link" in refused(declared(inst, inst / APP, None)[0])
    info = describe(declared(inst, inst / APP, None)[0])
    assert info["exists"] and "symbolic link" in info["error"] and info["size"] == 0


def test_a_directory_on_the_path_swapped_for_a_symlink_is_refused(inst: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "access.log").write_text(SECRET)
    (inst / APP / "logs" / "access.log").unlink()
    (inst / APP / "logs").rmdir()
    (inst / APP / "logs").symlink_to(elsewhere)
    entry = find(declared(inst, inst / APP, manifest(log_paths={"a": "logs/access.log"})), "a")
    assert "directory on its path" in refused(entry)


def test_paths_leaving_the_instance_are_refused(inst: Path):
    # service.json validation already rejects this; the agent does not rely on it.
    crafted = manifest()
    msgspec.structs.force_setattr(crafted, "log_paths", {"x": "../../../secret.txt"})
    entry = find(declared(inst, inst / APP, crafted), "x")
    assert "leaves the instance" in refused(entry)
    with pytest.raises(ValueError, match="stay inside the package"):
        manifest(log_paths={"x": "../x.log"})


def test_an_absolute_log_is_read_only_under_the_log_roots(inst: Path, tmp_path: Path):
    roots = (tmp_path / "var-log",)
    roots[0].mkdir()
    real = roots[0] / "sys.log"
    real.write_text("system\n")
    m = manifest(log_paths={"Sys": str(real)})
    entry = find(declared(inst, inst / APP, m, roots), "Sys")
    assert tail(entry, 100)[0] == b"system\n"
    real.unlink()
    real.symlink_to(tmp_path / "secret.txt")
    assert "symbolic link" in refused(entry)
    # A file outside every root (an /etc/shadow), also reached by `..`: refused, never read.
    secret = str(tmp_path / "secret.txt")
    for path in (secret, f"{roots[0]}/../secret.txt"):
        crafted = manifest(log_paths={"Shadow": path})
        with pytest.raises(GdosError) as info:
            check_log_roots(crafted.log_paths, roots, inst)
        assert info.value.code == "forbidden" and "--log-roots" in info.value.message
        entry = find(declared(inst, inst / APP, crafted, roots), "Shadow")
        assert "--log-roots" in refused(entry)
        assert describe(entry)["size"] == 0
    # A folder inside the root that is a link out of it is refused at read time.
    (roots[0] / "app").symlink_to(tmp_path)
    linked = find(
        declared(inst, inst / APP, manifest(log_paths={"L": f"{roots[0]}/app/secret.txt"}), roots),
        "L",
    )
    assert "directory on its path" in refused(linked)
    # The instance's own folder is always allowed, by absolute path too.
    own = manifest(log_paths={"Own": str(inst / "logs" / "stdout.log")})
    check_log_roots(own.log_paths, (), inst)
    assert tail(find(declared(inst, inst / APP, own, ()), "Own"), 100)[0] == b"out line\n"


def test_log_roots_flag_parsing():
    assert parse_log_roots("/var/log, /srv/logs") == (Path("/var/log"), Path("/srv/logs"))
    assert parse_log_roots("") == ()
    with pytest.raises(ValueError, match="absolute"):
        parse_log_roots("logs")


def test_a_fifo_is_refused_without_hanging(inst: Path):
    out = inst / "logs" / "stdout.log"
    out.unlink()
    os.mkfifo(out)
    assert "not a regular file" in refused(declared(inst, inst / APP, None)[0])


def numbered(n: int) -> bytes:
    return b"".join(b"%09d\n" % i for i in range(n))  # 10 bytes a line


def test_rotation_cuts_a_big_file_into_bounded_backups(inst: Path):
    out = inst / "logs" / "stdout.log"
    out.write_bytes(numbered(10_500))  # 105,000 bytes
    rule = LogRotate(max_bytes=10_000, backups=3)
    entry = declared(inst, inst / APP, None)[0]
    assert logrotate.needs_rotation(entry, rule)
    assert logrotate.rotate(entry, rule) == 3
    assert out.stat().st_size == 0
    one, two, three = (Path(f"{out}.{i}").read_bytes() for i in (1, 2, 3))
    assert one.endswith(b"000010499\n") and one.startswith(b"000009500\n") and len(one) == 10_000
    assert two.endswith(b"000009499\n") and three.endswith(b"000008499\n")
    assert not Path(f"{out}.4").exists()

    out.write_bytes(b"x" * 10_001)
    assert logrotate.rotate(entry, rule) == 2  # 2 pieces; old .1 -> .3, old .2 and .3 dropped
    assert Path(f"{out}.3").read_bytes() == one
    assert Path(f"{out}.1").read_bytes() == b"x" * 10_000
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "stderr.log",
        "stdout.log",
        "stdout.log.1",
        "stdout.log.2",
        "stdout.log.3",
    ]


def test_rotation_never_writes_through_a_symlink(inst: Path, tmp_path: Path):
    out = inst / "logs" / "stdout.log"
    out.unlink()
    out.symlink_to(tmp_path / "secret.txt")
    rule = LogRotate(max_bytes=5, backups=1)
    entry = declared(inst, inst / APP, None)[0]
    assert not logrotate.needs_rotation(entry, rule)
    with pytest.raises(GdosError):
        logrotate.rotate(entry, rule)
    assert (tmp_path / "secret.txt").read_text() == SECRET


WRITER = [
    sys.executable,
    "-c",
    "import sys, time\n"
    "for i in range(199999):\n"
    "    sys.stdout.write('%09d\\n' % i)\n"
    "    if i % 2000 == 0: sys.stdout.flush(); time.sleep(0.005)\n"
    # Copytruncate loses what is written between its copy and its truncate (logrotate says the
    # same): the last line comes after every rotation has finished, so the test can demand it.
    "sys.stdout.flush(); time.sleep(0.5); sys.stdout.write('000199999\\n')\n",
]


def test_copytruncate_while_the_service_appends(inst: Path):
    """The writer holds the file in append mode (as services do); after each truncate its
    writes land at the start: no hole, nothing garbled, and the size stays bounded."""
    out = inst / "logs" / "stdout.log"
    out.unlink()
    with open(out, "ab") as f:
        child = process.spawn(WRITER, inst, dict(os.environ), f, f)
    rule = LogRotate(max_bytes=100_000, backups=2)
    entry = declared(inst, inst / APP, None)[0]
    rotations = 0
    while child.poll() is None:
        if logrotate.needs_rotation(entry, rule):
            rotations += logrotate.rotate(entry, rule) > 0
    child.wait()
    logrotate.rotate(entry, rule)
    assert rotations >= 3
    files = [out, *(Path(f"{out}.{i}") for i in (1, 2))]
    total = sum(p.stat().st_size for p in files)
    assert total <= 3 * 100_000 + 10
    for p in files:
        data = p.read_bytes()
        assert b"\x00" not in data  # no sparse hole: the writer appended at the new end
        lines = data.split(b"\n")[1:-1]  # the cut may split the first line
        assert all(len(line) == 9 and line.isdigit() for line in lines), p
    newest = Path(f"{out}.1").read_bytes() + out.read_bytes()
    assert newest.endswith(b"000199999\n")


def supervisor_with(inst: Path, m: Manifest) -> Supervisor:
    sup = Supervisor(inst.parent, StateFile(inst.parent / "state.json"), None, lambda r: None)  # type: ignore[arg-type]
    ref = PackageRef(id="p", name="svc", version="1", sha256="0" * 64, size=1, url="/x")
    spec = InstanceSpec(instance_id=inst.name, name="svc-1", package=ref)
    sup.instances[inst.name] = Managed(
        spec=spec, manifest=m, state=ProcessState.RUNNING, release=Path(APP).name
    )
    return sup


async def test_requests_from_the_master(inst: Path):
    sent: list[LogChunk] = []

    async def send(chunk: LogChunk) -> None:
        sent.append(chunk)

    logs = AgentLogs(supervisor_with(inst, manifest(log_paths={"A": "logs/access.log"})), send)
    listed = await logs.handle(ListLogs(id="1", instance_id="i1"))
    assert [(x["name"], x["size"], x["exists"]) for x in listed["logs"]] == [
        ("stdout", 9, True),
        ("stderr", 9, True),
        ("A", 6, True),
    ]
    got = await logs.handle(TailLog(id="2", instance_id="i1", name="A", tail_bytes=3))
    assert got["size"] == 6 and got["offset"] == 3
    with pytest.raises(GdosError) as info:
        await logs.handle(TailLog(id="3", instance_id="i1", name="../../secret.txt"))
    assert info.value.code == "not_found"
    with pytest.raises(GdosError):
        await logs.handle(TailLog(id="4", instance_id="nope", name="stdout"))

    # Follow: appended bytes arrive as chunks; a rotation is flagged; stop ends the stream.
    await logs.handle(FollowLog(id="5", instance_id="i1", name="stdout"))
    with open(inst / "logs" / "stdout.log", "ab") as f:
        f.write("héllo\n".encode())
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.05)
    assert [(c.data, c.offset, c.reset) for c in sent] == [("héllo\n", 9, False)]
    logrotate.rotate(declared(inst, inst / APP, None)[0], LogRotate(max_bytes=1, backups=1))
    with open(inst / "logs" / "stdout.log", "ab") as f:
        f.write(b"after\n")
    for _ in range(100):
        if len(sent) > 1:
            break
        await asyncio.sleep(0.05)
    assert (sent[-1].data, sent[-1].offset, sent[-1].reset) == ("after\n", 0, True)
    await logs.handle(FollowLog(id="6", instance_id="i1", name="stdout", follow=False))
    await asyncio.sleep(0.1)
    count = len(sent)
    with open(inst / "logs" / "stdout.log", "ab") as f:
        f.write(b"unseen\n")
    await asyncio.sleep(0.6)
    assert len(sent) == count and logs.followers == {}


async def test_following_a_swapped_log_is_refused(inst: Path, tmp_path: Path):
    async def send(chunk: LogChunk) -> None:
        raise AssertionError(chunk)

    logs = AgentLogs(supervisor_with(inst, manifest()), send)
    err = inst / "logs" / "stderr.log"
    err.unlink()
    err.symlink_to(tmp_path / "secret.txt")
    with pytest.raises(GdosError, match="symbolic link"):
        await logs.handle(FollowLog(id="1", instance_id="i1", name="stderr"))
    assert logs.followers == {}


async def test_a_swap_while_following_stops_the_stream_with_the_reason(inst: Path, tmp_path: Path):
    sent: list[LogChunk] = []

    async def send(chunk: LogChunk) -> None:
        sent.append(chunk)

    logs = AgentLogs(supervisor_with(inst, manifest()), send)
    await logs.handle(FollowLog(id="1", instance_id="i1", name="stdout"))
    out = inst / "logs" / "stdout.log"
    out.unlink()
    out.symlink_to(tmp_path / "secret.txt")
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.05)
    assert len(sent) == 1 and "symbolic link" in (sent[0].error or "") and sent[0].data == ""
    await asyncio.sleep(0.1)
    assert logs.followers == {}


def test_the_logs_of_an_instance_that_did_not_run_are_looked_at_less_often(inst: Path):
    sup = supervisor_with(inst, manifest())
    asked: list[tuple[str, float]] = []
    ran = False

    def active(instance_id: str, since: float) -> bool:
        asked.append((instance_id, since))
        return ran

    watched = logrotate.Targets()

    def names(now: float) -> list[str]:
        return [name for _, _, name, _ in watched.due(sup, now, active)]

    assert names(1000.0) == ["stdout", "stderr"]  # a first look, whatever it did
    assert names(1001.0) == [] and asked == [(inst.name, 1000.0)]
    ran = True
    assert names(1002.0) == ["stdout", "stderr"]
    ran = False
    assert names(1003.0) == []
    assert names(1002.0 + logrotate.QUIET_LOOK) == ["stdout", "stderr"]  # looked at all the same
    assert [name for _, _, name, _ in watched.due(sup, 1013.0)] == [
        "stdout",
        "stderr",
    ]  # no monitor
    path = inst / "logs" / "stdout.log"
    assert next(watched.due(sup, 1014.0))[:3] == (inst.name, str(path), "stdout")
    entry = logrotate.entry_of(sup, inst.name, "stdout")
    assert entry is not None and entry.path == path and entry.own
