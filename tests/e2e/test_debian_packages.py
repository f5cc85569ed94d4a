"""The Debian packages of the frozen programs (scripts/package-deb.sh): built and checked with
lintian and desktop-file-validate, installed into a throwaway root (dpkg --root, maintainer
scripts run chrootless against that root), their units verified, removed and purged again."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.agent.test_autostart_cli import systemd_analyze
from tests.frozen_build import frozen_dist
from tests.support import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="Debian packages need dpkg"),
]
TOOLS = ("lintian", "desktop-file-validate")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[dict[str, Path], str]:
    """name -> .deb, and the packaging script's output (gzip -1: quick to build and to check)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: scripts/system-deps.sh packaging installs them")
    out = tmp_path_factory.mktemp("deb")
    script = ROOT / "scripts" / "package-deb.sh"
    done = subprocess.run(
        [script, frozen_dist(), out, "--compression", "gzip", "--level", "1"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {p.name.split("_")[0]: p for p in out.glob("*.deb")}, done.stdout


@pytest.fixture(scope="module")
def root(built, tmp_path_factory) -> tuple[Path, str]:
    """A throwaway root with the three packages installed (and the host's systemd units, for
    `systemd-analyze verify --root`); with dpkg's output."""
    if os.geteuid() != 0:
        pytest.skip("installing into a throwaway root needs root (the packages' files are root's)")
    debs, _ = built
    r = tmp_path_factory.mktemp("root")
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log", "etc"):
        (r / d).mkdir(parents=True)
    (r / "var/lib/dpkg/status").touch()
    done = dpkg(r, "--force-depends", "-i", *debs.values())
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copytree("/lib/systemd/system", r / "lib/systemd/system", dirs_exist_ok=True)
    return r, done.stdout


def dpkg(root: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["dpkg", f"--root={root}", "--force-script-chrootless", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def verify_unit(root: Path, unit: str) -> None:
    done = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", f"/lib/systemd/system/{unit}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and unit not in done.stderr, done.stderr


def test_three_packages_pass_lintian_and_desktop_file_validate(built):
    debs, output = built
    assert sorted(debs) == ["gdos-agent", "gdos-console", "gdos-master"]
    assert "package-deb: lintian: no errors" in output and "lintian E:" not in output
    assert "desktop-file-validate: clean" in output
    fields = subprocess.run(
        ["dpkg-deb", "-f", debs["gdos-console"], "Depends"], capture_output=True, text=True
    ).stdout
    # The console leaves this system's libraries to Debian: it depends on their packages.
    assert "libc6 (>= " in fields and "libxcb1" in fields and "libssl3" in fields


def test_the_agent_package_installs_binary_and_unit_and_does_not_enrol(root):
    r, output = root
    assert (r / "usr/bin/gdos-agent").stat().st_mode & stat.S_IXUSR
    verify_unit(r, "gdos-agent.service")
    unit = (r / "lib/systemd/system/gdos-agent.service").read_text()
    assert "ExecStart=/usr/bin/gdos-agent\n" in unit and "KillMode=process" in unit
    assert "EnvironmentFile=-/etc/default/gdos-agent" in unit
    assert "GDOS_AGENT_WORK_DIR=/var/lib/gdos-agent" in (r / "etc/default/gdos-agent").read_text()
    work = r / "var/lib/gdos-agent"
    assert stat.S_IMODE(work.stat().st_mode) == 0o700 and not list(work.iterdir())  # no enrolment
    command = "gdos-agent --master http://MASTER:8080 --token JOIN_TOKEN --work-dir /var/lib/gdos-agent --autostart 1"
    assert command in output
    assert not list((r / "etc").glob("systemd/system/multi-user.target.wants/gdos-agent*"))


def test_the_master_package_makes_its_user_data_dir_unit_and_flags(root):
    r, output = root
    users = {
        line.split(":")[0]: line.split(":") for line in (r / "etc/passwd").read_text().splitlines()
    }
    gdos = users["gdos"]
    assert 0 < int(gdos[2]) < 1000 and gdos[5:] == ["/var/lib/gdos", "/usr/sbin/nologin"]
    data = (r / "var/lib/gdos").stat()
    assert data.st_uid == int(gdos[2]) and stat.S_IMODE(data.st_mode) == 0o750
    assert "GDOS_DATA_DIR=/var/lib/gdos" in (r / "etc/default/gdos-master").read_text()
    verify_unit(r, "gdos-master.service")
    unit = (r / "lib/systemd/system/gdos-master.service").read_text()
    assert "User=gdos" in unit and "EnvironmentFile=-/etc/default/gdos-master" in unit
    assert "/var/lib/gdos/initial-admin-password" in output
    conffiles = subprocess.run(
        ["dpkg-query", f"--root={r}", "-W", "--showformat=${Conffiles}", "gdos-master"],
        capture_output=True,
        text=True,
    ).stdout
    assert "/etc/default/gdos-master" in conffiles
    with open("/etc/passwd") as host:  # the scripts worked on the throwaway root only
        assert "GDOS master" not in host.read()


def test_the_console_package_is_in_the_menu_and_runs_on_the_systems_libraries(root):
    r, _ = root
    entry = r / "usr/share/applications/gdos-console.desktop"
    assert "Exec=gdos-console" in entry.read_text()
    assert subprocess.run(["desktop-file-validate", entry]).returncode == 0
    assert (r / "usr/share/icons/hicolor/scalable/apps/gdos-console.svg").is_file()
    program = r / "usr/bin/gdos-console"
    assert program.is_symlink() and program.resolve() == r / "usr/lib/gdos-console/gdos-console"
    assert not (r / "usr/lib/gdos-console/_internal/libssl.so.3").exists()  # Debian's is used
    done = subprocess.run([program, "--self-check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gdos-master and gdos-agent passed theirs" in done.stdout


def test_purging_removes_the_programs_and_keeps_the_masters_data(root):
    r, _ = root
    (r / "var/lib/gdos/ops_data.db").write_bytes(b"the fleet's state")
    done = dpkg(r, "--purge", "gdos-agent", "gdos-master", "gdos-console")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (r / "usr/bin/gdos-agent").exists() and not (r / "usr/lib/gdos-console").exists()
    assert not (r / "etc/default/gdos-master").exists()  # a conffile goes on purge
    assert (r / "var/lib/gdos/ops_data.db").read_bytes() == b"the fleet's state"
