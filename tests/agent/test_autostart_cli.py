"""`gdos-agent --autostart` as a real process against a temporary unit directory and a fake
systemctl (GDOS_AGENT_SYSTEMD_DIR / GDOS_AGENT_SYSTEMCTL), and the unit checked by systemd."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent import credential
from tests.support import child_env

UNIT = "gdos-agent.service"

FAKE_SYSTEMCTL = """\
#!{python}
# Records its calls and keeps just enough state for is-enabled / is-active.
import pathlib, sys
state = pathlib.Path({state!r})
state.mkdir(exist_ok=True)
with open(state / "calls.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
cmd = sys.argv[1]
if cmd == "is-enabled":
    on = (state / "enabled").exists()
    print("enabled" if on else "disabled")
    sys.exit(0 if on else 1)
if cmd == "is-active":
    sys.exit(0 if (state / "active").exists() else 3)
if cmd == "enable":
    (state / "enabled").touch()
if cmd in ("start", "restart"):
    (state / "active").touch()
if cmd == "disable":
    (state / "enabled").unlink(missing_ok=True)
    if "--now" in sys.argv:
        (state / "active").unlink(missing_ok=True)
"""


@pytest.fixture
def fake_host(tmp_path):
    unit_dir = tmp_path / "etc-systemd-system"
    unit_dir.mkdir()
    state = tmp_path / "systemctl-state"
    ctl = tmp_path / "systemctl"
    ctl.write_text(FAKE_SYSTEMCTL.format(python=sys.executable, state=str(state)))
    ctl.chmod(0o755)
    work = tmp_path / "work dir"  # a space, as operators' paths sometimes have
    work.mkdir()
    env = child_env(GDOS_AGENT_SYSTEMD_DIR=str(unit_dir), GDOS_AGENT_SYSTEMCTL=str(ctl))
    return unit_dir, state, work, env


def agent(args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def calls(state: Path) -> list[str]:
    return (state / "calls.log").read_text().splitlines()


def test_autostart_twice_then_off(fake_host, tmp_path):
    unit_dir, state, work, env = fake_host
    credential.save(work, credential.Credential("http://127.0.0.1:9", "node-1", "s3cret"))
    flags = ["--master", "http://127.0.0.1:9", "--work-dir", str(work)]

    first = agent([*flags, "--autostart", "1"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"wrote {unit_dir / UNIT}" in first.stdout
    assert sorted(p.name for p in unit_dir.iterdir()) == [UNIT]
    unit = (unit_dir / UNIT).read_text()
    assert f'--work-dir "{work}"' in unit and "s3cret" not in unit
    assert calls(state) == [
        "daemon-reload",
        f"is-enabled {UNIT}",
        f"enable {UNIT}",
        f"is-active --quiet {UNIT}",
        f"start {UNIT}",
    ]
    stamp = (unit_dir / UNIT).stat().st_mtime_ns

    second = agent([*flags, "-autostart", "1"], env, tmp_path)  # the seed's spelling
    assert second.returncode == 0, second.stderr
    assert "already on (systemd); nothing changed" in second.stdout
    assert sorted(p.name for p in unit_dir.iterdir()) == [UNIT]
    assert (unit_dir / UNIT).stat().st_mtime_ns == stamp and (unit_dir / UNIT).read_text() == unit
    assert calls(state)[5:] == [f"is-enabled {UNIT}", f"is-active --quiet {UNIT}"]  # queries only

    off = agent([*flags, "--autostart", "0"], env, tmp_path)
    assert off.returncode == 0, off.stderr
    assert list(unit_dir.iterdir()) == []
    assert calls(state)[7:] == [f"disable --now {UNIT}", "daemon-reload"]
    assert (work / credential.CREDENTIAL_FILE).exists()  # the node keeps its identity


def test_autostart_on_an_unenrolled_node_without_token_is_refused(fake_host, tmp_path):
    unit_dir, state, work, env = fake_host
    done = agent(["--work-dir", str(work), "--autostart", "1"], env, tmp_path)
    assert done.returncode == 2
    assert "not enrolled yet" in done.stderr and "--token" in done.stderr
    assert list(unit_dir.iterdir()) == [] and not state.exists()


def test_a_missing_unit_dir_is_a_clear_error(fake_host, tmp_path):
    _, state, work, env = fake_host
    credential.save(work, credential.Credential("http://127.0.0.1:9", "node-1", "s3cret"))
    env["GDOS_AGENT_SYSTEMD_DIR"] = str(tmp_path / "missing")
    done = agent(["--work-dir", str(work), "--autostart", "1"], env, tmp_path)
    assert done.returncode == 2
    assert f"cannot write to {tmp_path / 'missing'}" in done.stderr
    assert not state.exists()


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if sys.platform != "linux":
            pytest.skip("systemd-analyze exists on Linux only")
        pytest.fail(
            "systemd-analyze is missing: scripts/system-deps.sh installs it (package systemd)"
        )
    return found


def verify(unit_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit_path)], capture_output=True, text=True, timeout=60
    )


def test_the_generated_unit_passes_systemd_analyze_verify(fake_host, tmp_path):
    _, _, work, env = fake_host
    done = agent(
        [
            "--autostart-print",
            "linux",
            "--work-dir",
            str(work),
            "--master",
            "http://m:8080",
            "--port",
            "9100",
        ],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    path = tmp_path / "check" / UNIT
    path.parent.mkdir()
    path.write_text(done.stdout)
    result = verify(path)
    complaints = [line for line in result.stderr.splitlines() if UNIT in line]
    assert result.returncode == 0 and complaints == [], result.stderr

    # The check can fail: a unit systemd cannot use is caught.
    path.write_text(done.stdout.replace("KillMode=process", "KillMode=sometimes"))
    assert any(UNIT in line for line in verify(path).stderr.splitlines())
