"""Finding processes GDOS did not start, with real processes: by name, by command line, by PID
file; ambiguity and reused PIDs are refused."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from agent.executor import locate, process
from protocol.errors import ErrorCode, GdosError


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []

    def start(argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
        p.wait()


def named_sleep(tmp_path, name: str) -> str:
    exe = tmp_path / name
    shutil.copy("/bin/sleep", exe)
    return str(exe)


def test_by_name_one_none_or_ambiguous(tmp_path, procs):
    name = f"gs{uuid.uuid4().hex[:8]}"
    exe = named_sleep(tmp_path, name)
    with pytest.raises(GdosError) as none:
        locate.only_one(locate.scan(locate.Matcher(process_name=name), set()), name)
    assert none.value.code == ErrorCode.PROCESS_NOT_FOUND
    first = procs([exe, "60"])
    found = locate.only_one(locate.scan(locate.Matcher(process_name=name), set()), name)
    assert found.pid == first.pid
    second = procs([exe, "61"])
    with pytest.raises(GdosError) as many:
        locate.only_one(locate.scan(locate.Matcher(process_name=name), set()), name)
    assert many.value.code == ErrorCode.AMBIGUOUS_MATCH
    listed = many.value.details["candidates"]
    assert {c["pid"] for c in listed} == {first.pid, second.pid}
    assert all(c["name"] == name and "sleep" not in c["name"] for c in listed)
    assert any("61" in c["cmdline"] for c in listed)
    # Excluding one (already managed) leaves the other.
    rest = locate.scan(locate.Matcher(process_name=name), {first.pid})
    assert [p.pid for p in rest] == [second.pid]


def test_by_cmdline_pattern_never_matches_the_agent_itself(procs):
    tag = f"tag-{uuid.uuid4().hex}"
    p = procs([sys.executable, "-c", "import time; time.sleep(60)", tag])
    m = locate.Matcher(cmdline_pattern=rf"time\.sleep\(60\).*{tag}")
    assert [x.pid for x in locate.scan(m, set())] == [p.pid]
    # This test process's own command line does not contain the tag, but a pattern that
    # matches "python" would match pytest too: the agent's own lineage is always excluded.
    assert os.getpid() not in [
        x.pid for x in locate.scan(locate.Matcher(cmdline_pattern="python"), set())
    ]


def test_pid_file(tmp_path, procs):
    p = procs(["/bin/sleep", "60"])
    time.sleep(0.1)
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(f"{p.pid}\n")
    assert locate.from_pid_file(pid_file).pid == p.pid
    assert locate.from_pid_file(pid_file, locate.Matcher(process_name="sleep")).pid == p.pid


def test_pid_file_of_a_reused_pid_is_refused(tmp_path, procs):
    p = procs(["/bin/sleep", "60"])
    pid_file = tmp_path / "old.pid"
    pid_file.write_text(str(p.pid))
    hour_ago = time.time() - 3600
    os.utime(pid_file, (hour_ago, hour_ago))  # written long before this process existed
    with pytest.raises(GdosError) as exc:
        locate.from_pid_file(pid_file)
    assert exc.value.code == ErrorCode.PROCESS_IDENTITY
    assert "reused" in exc.value.message and exc.value.details["candidate"]["pid"] == p.pid


def test_pid_file_naming_another_program_is_refused(tmp_path, procs):
    p = procs(["/bin/sleep", "60"])
    time.sleep(0.05)
    pid_file = tmp_path / "db.pid"
    pid_file.write_text(str(p.pid))
    with pytest.raises(GdosError) as exc:
        locate.from_pid_file(pid_file, locate.Matcher(process_name="postgres"))
    assert (
        exc.value.code == ErrorCode.PROCESS_IDENTITY
        and "not a process named 'postgres'" in exc.value.message
    )


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (None, ErrorCode.PROCESS_NOT_FOUND),
        ("garbage", ErrorCode.PROCESS_NOT_FOUND),
        ("999999999", ErrorCode.PROCESS_NOT_FOUND),
    ],
)
def test_pid_file_problems(tmp_path, content, code):
    pid_file = tmp_path / "x.pid"
    if content is not None:
        pid_file.write_text(content)
    with pytest.raises(GdosError) as exc:
        locate.from_pid_file(pid_file)
    assert exc.value.code == code and str(pid_file) in exc.value.message


def test_identity_with_a_command_line_refuses_a_changed_process(procs):
    p = procs(["/bin/sleep", "60"])
    time.sleep(0.05)
    real = process.full_identity(psutil.Process(p.pid))
    assert real.cmdline == ("/bin/sleep", "60")
    assert process.find(real) is not None
    other = process.Identity(real.pid, real.create_time, ("/usr/bin/postgres",))
    assert process.find(other) is None


async def test_find_started_takes_the_new_process_not_an_older_twin(tmp_path, procs):
    tag = f"svc-{uuid.uuid4().hex}"
    daemon = [sys.executable, "-c", "import time; time.sleep(60)", tag]
    old = procs(daemon)  # an older process that matches too
    time.sleep(0.1)
    since = time.time()
    launcher = procs(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)",
            *daemon,
        ],
        env={**os.environ, "GDOS_INSTANCE_ID": "i-1"},
    )
    target = locate.Target(locate.Matcher(cmdline_pattern=tag))
    found = await locate.find_started(
        target, launcher, since, set(), ("GDOS_INSTANCE_ID", "i-1"), 20
    )
    try:
        assert found.pid not in (old.pid, launcher.pid)
        assert found.environ().get("GDOS_INSTANCE_ID") == "i-1"
    finally:
        found.kill()


async def test_find_started_fails_when_the_start_command_fails(procs):
    launcher = procs([sys.executable, "-c", "raise SystemExit(4)"])
    target = locate.Target(locate.Matcher(process_name="no-such-thing"))
    with pytest.raises(GdosError) as exc:
        await locate.find_started(target, launcher, time.time(), set(), ("K", "V"), 20)
    assert exc.value.code == ErrorCode.START_FAILED and "code 4" in exc.value.message
