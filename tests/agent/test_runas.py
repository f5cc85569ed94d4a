"""Services run as their own account: the real process's uid and gid, who owns which folder,
and what the service can and cannot write; probes and stop commands run as it too. The tests
run as root and use the node's `nobody` account. Accounts that cannot be used are refused."""

import asyncio
import io
import json
import os
import pwd
import shutil
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.executor import runas
from agent.executor.states import ProcessState
from agent.executor.supervisor import Supervisor
from agent.state import StateFile
from protocol.errors import ErrorCode, GdosError
from protocol.messages import InstanceReport, InstanceSpec, PackageRef
from protocol.states import HealthState, InstanceState

pytestmark = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root")

NOBODY = pwd.getpwnam("nobody")

# The service records who it is and tries to write where it must not (the agent's state file,
# its own code); the probe and the stop command record who they run as.
RUN = """#!/bin/sh
echo $$ > "$GDOS_DATA_DIR/pid"
echo "$(id -u) $(id -g) $USER $HOME" > "$GDOS_DATA_DIR/whoami"
echo hello >> ../logs/app.log
echo kept > ../uploads/by-service
( echo x >> "$GDOS_DATA_DIR/../../agent-state.json" ) 2>/dev/null && touch "$GDOS_DATA_DIR/wrote-state"
( echo x >> ../service.json ) 2>/dev/null && touch "$GDOS_DATA_DIR/wrote-code"
( touch ../new-file ) 2>/dev/null && touch "$GDOS_DATA_DIR/wrote-app"
( echo x >> "$GDOS_DATA_DIR/../logs/stdout.log" ) 2>/dev/null && touch "$GDOS_DATA_DIR/wrote-stdout"
echo started
exec sleep 600
"""
CHECK = "#!/bin/sh\nid -u > logs/probe-uid\n"
STOP = '#!/bin/sh\nid -u > "$GDOS_DATA_DIR/stop-uid"\nkill "$(cat "$GDOS_DATA_DIR/pid")"\n'


def package(dest: Path, **manifest: object) -> Path:
    body = {
        "name": "who",
        "version": "1",
        "entrypoint": "bin/run",
        "stop_entrypoint": "bin/stop",
        "log_paths": {"App": "logs/app.log"},
        "health": {"command": ["bin/check"], "interval": 0.2},
        "shared_paths": ["uploads/"],
        **manifest,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("service.json", json.dumps(body))
        for name, text in (("bin/run", RUN), ("bin/check", CHECK), ("bin/stop", STOP)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            zf.writestr(info, text)
    dest.write_bytes(buf.getvalue())
    return dest


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A work dir every account can reach (pytest's tmp_path sits in a 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="gdos-runas-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    for proc in psutil.process_iter(["cwd"]):
        if (proc.info["cwd"] or "").startswith(str(d)):
            proc.kill()
    shutil.rmtree(d, ignore_errors=True)


def make_supervisor(work: Path, zip_path: Path, **kw: object) -> tuple[Supervisor, list]:
    async def fetch(ref: PackageRef, dest: Path) -> None:
        shutil.copy(zip_path, dest)

    reports: list[InstanceReport] = []
    work.mkdir(exist_ok=True)
    state = StateFile(work / "agent-state.json")
    return Supervisor(work, state, fetch, reports.append, **kw), reports  # type: ignore[arg-type]


def spec(**kw: object) -> InstanceSpec:
    ref = PackageRef(id="p", name="who", version="1", sha256="0" * 64, size=1, url="/x")
    return InstanceSpec(instance_id=f"i-{uuid.uuid4().hex[:8]}", name="who-1", package=ref, **kw)  # type: ignore[arg-type]


async def until(predicate, what: str, timeout: float = 30.0) -> None:
    """wait_for without blocking the event loop the supervisor's tasks run on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


async def test_a_service_runs_as_its_user_and_writes_only_its_own_folders(open_dir: Path):
    zip_path = package(open_dir / "who.zip", user="nobody")
    sup, _ = make_supervisor(open_dir / "work", zip_path)
    s = spec()
    await sup.deploy(s)
    inst = sup.instance_dir(s.instance_id)
    app = sup.app_dir(sup.get(s.instance_id))
    assert app is not None and app.parent == inst / "releases"
    me = (0, 0)
    nobody = (NOBODY.pw_uid, NOBODY.pw_gid)
    assert owner(inst) == (0, NOBODY.pw_gid) and stat.S_IMODE(inst.stat().st_mode) == 0o750
    assert owner(inst / "releases") == me and owner(app) == me and owner(app / "bin") == me
    assert owner(inst / "shared" / "uploads") == nobody
    assert owner(inst / "data") == nobody and stat.S_IMODE((inst / "data").stat().st_mode) == 0o750
    assert owner(app / "logs") == nobody and owner(app / "logs" / "app.log") == nobody
    assert sup.get(s.instance_id).report().user == "nobody"

    await sup.start(s.instance_id)
    m = sup.get(s.instance_id)
    data = inst / "data"
    await until(lambda: "started" in (inst / "logs" / "stdout.log").read_text(), "the service up")
    proc = psutil.Process(m.pid)
    assert proc.uids().real == NOBODY.pw_uid and proc.gids().real == NOBODY.pw_gid
    assert proc.username() == "nobody" and m.report().user == "nobody"
    uid, gid, user, home = (data / "whoami").read_text().split()
    assert (int(uid), int(gid), user, home) == (
        NOBODY.pw_uid,
        NOBODY.pw_gid,
        "nobody",
        NOBODY.pw_dir,
    )
    assert (app / "logs" / "app.log").read_text() == "hello\n"
    assert (inst / "shared" / "uploads" / "by-service").read_text() == "kept\n"
    for breach in ("wrote-state", "wrote-code", "wrote-app", "wrote-stdout"):
        assert not (data / breach).exists(), breach
    assert "x" not in (open_dir / "work" / "agent-state.json").read_text()[-2:]
    assert owner(inst / "logs" / "stdout.log") == me  # the agent's, written by inheritance

    await until(lambda: m.health == HealthState.HEALTHY, "the probe passes")
    assert (app / "logs" / "probe-uid").read_text().strip() == str(NOBODY.pw_uid)
    await sup.stop(s.instance_id)
    assert m.state == ProcessState.STOPPED
    assert (data / "stop-uid").read_text().strip() == str(NOBODY.pw_uid)
    assert not proc.is_running()
    await sup.close()


async def test_the_default_user_and_the_instance_setting(open_dir: Path):
    """--default-user covers services that name none; the instance's own setting wins."""
    zip_path = package(open_dir / "who.zip")  # no user in service.json
    sup, _ = make_supervisor(open_dir / "work", zip_path, default_user="nobody")
    by_default, as_root = spec(), spec(user="root")
    for s in (by_default, as_root):
        await sup.deploy(s)
        await sup.start(s.instance_id)
    users = {}
    for s in (by_default, as_root):
        m = sup.get(s.instance_id)
        users[s.instance_id] = (psutil.Process(m.pid).username(), m.report().user)
    assert users[by_default.instance_id] == ("nobody", "nobody")
    assert users[as_root.instance_id] == ("root", "root")
    root_data = sup.instance_dir(as_root.instance_id) / "data"
    assert owner(root_data) == (0, 0)  # its own account: nothing handed over
    for s in (by_default, as_root):
        await sup.stop(s.instance_id)
    await sup.close()


@pytest.mark.parametrize(
    ("manifest", "code", "words"),
    [
        (
            {"user": "gdos-no-such-user"},
            ErrorCode.VALIDATION_FAILED,
            "user 'gdos-no-such-user' does not exist on this node",
        ),
        (
            {"user": "nobody", "group": "gdos-no-such-group"},
            ErrorCode.VALIDATION_FAILED,
            "group 'gdos-no-such-group' does not exist",
        ),
    ],
)
async def test_an_account_missing_on_the_node_fails_the_deploy(
    open_dir: Path, manifest, code, words
):
    sup, reports = make_supervisor(open_dir / "work", package(open_dir / "who.zip", **manifest))
    s = spec()
    with pytest.raises(GdosError) as exc:
        await sup.deploy(s)
    assert exc.value.code == code and words in exc.value.message
    assert reports[-1].state == InstanceState.FAILED and words in (reports[-1].error or "")
    assert not sup.instance_dir(s.instance_id).exists() and s.instance_id not in sup.instances


async def test_a_work_dir_the_user_cannot_reach_fails_the_deploy(tmp_path: Path):
    # pytest's tmp_path lies in a 0700 folder of root's: nobody cannot get in.
    sup, _ = make_supervisor(tmp_path / "work", package(tmp_path / "who.zip", user="nobody"))
    with pytest.raises(GdosError) as exc:
        await sup.deploy(spec())
    assert exc.value.code == ErrorCode.DEPLOY_FAILED
    assert "user nobody cannot reach" in exc.value.message and "chmod o+x" in exc.value.message


def test_a_non_root_agent_refuses_another_account(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: NOBODY.pw_uid)  # the OS seam: "not root"
    monkeypatch.setattr(os, "getegid", lambda: NOBODY.pw_gid)
    with pytest.raises(GdosError) as exc:
        runas.resolve("root", None, None)
    assert exc.value.code == ErrorCode.FORBIDDEN
    assert (
        "this agent runs as nobody, not root, so it cannot run services as root"
        in exc.value.message
    )
    assert runas.resolve(None, None, None) == runas.Account(
        "nobody", NOBODY.pw_uid, NOBODY.pw_gid, (), NOBODY.pw_dir, False
    )


def test_windows_refuses_another_account_clearly(monkeypatch):
    monkeypatch.setattr(runas, "IS_WINDOWS", True)
    own = runas.own_user()
    assert runas.resolve(None, None, None) == runas.Account(own)
    with pytest.raises(GdosError) as exc:
        runas.resolve("nobody", None, None)
    assert (
        exc.value.code == ErrorCode.UNSUPPORTED and "not supported on Windows" in exc.value.message
    )


async def test_an_adopted_start_command_runs_as_the_adopt_user(open_dir: Path):
    import subprocess

    from protocol.messages import AdoptSpec

    tag = f"adopt-{uuid.uuid4().hex[:8]}"
    command = ["/bin/sh", "-c", "sleep 600; :", tag]
    outside = subprocess.Popen(command, start_new_session=True)  # root's, started by hand
    sup, _ = make_supervisor(open_dir / "work", open_dir / "none.zip")
    adopt = AdoptSpec(strategy="cmdline", cmdline_pattern=tag, start_command=command, user="nobody")
    try:
        report = await sup.adopt(InstanceSpec(instance_id="a1", name="a1", adopt=adopt))
        assert report.user == "root"  # what it was found running as
        await sup.stop("a1")
        await sup.start("a1")
        m = sup.get("a1")
        assert psutil.Process(m.pid).uids().real == NOBODY.pw_uid and m.report().user == "nobody"
        await sup.stop("a1")
    finally:
        outside.kill()
        outside.wait()
        await sup.close()


def test_an_adopt_naming_a_missing_user_is_refused(open_dir: Path):
    from protocol.messages import AdoptSpec

    sup, _ = make_supervisor(open_dir / "work", open_dir / "none.zip")
    adopt = AdoptSpec(strategy="process_name", process_name="init", user="gdos-no-such-user")
    with pytest.raises(GdosError) as exc:
        asyncio.run(sup.adopt(InstanceSpec(instance_id="a", name="a", adopt=adopt)))
    assert "does not exist on this node" in exc.value.message
