"""Autostart definitions and the commands each OS would get, asserted on a fake OS seam."""

import argparse
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import agent.autostart as autostart
from agent import credential
from agent.__main__ import main
from agent.autostart.command import agent_command
from agent.autostart.launchd import LABEL, Launchd
from agent.autostart.system import AutostartError
from agent.autostart.systemd import UNIT, Systemd, quote, unit_text
from agent.autostart.windows import NS, TASK, TaskScheduler
from tests.agent.fake_os import FakeSystem

UNIT_PATH = Path("/etc/systemd/system/gdos-agent.service")


def args_for(work_dir: Path, mode: str = "1", token: str | None = None, **kw) -> argparse.Namespace:
    base = {
        "master": "http://master.example:8080/",
        "work_dir": work_dir,
        "port": None,
        "ca_cert": None,
        "log_level": "info",
        "token": token,
        "autostart": mode,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def enrolled(work_dir: Path) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    credential.save(work_dir, credential.Credential("http://master.example:8080", "n1", "secret"))
    return work_dir


def unit_lines(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


# -- systemd --------------------------------------------------------------------------------


def test_systemd_unit_runs_this_agent_with_its_own_flags(tmp_path):
    cmd = agent_command(
        "http://m:8080/", tmp_path / "w", port=9100, ca_cert=Path("ca.pem"), log_level="debug"
    )
    text = unit_text(cmd)
    u = unit_lines(text)
    exec_start = u["ExecStart"][0].split()
    assert Path(exec_start[0]).is_absolute() and exec_start[1:3] == ["-m", "agent"]
    assert exec_start[3:] == [
        "--master",
        "http://m:8080",
        "--work-dir",
        str(tmp_path / "w"),
        "--port",
        "9100",
        "--ca-cert",
        str(Path("ca.pem").absolute()),
        "--log-level",
        "debug",
    ]
    assert "--token" not in u["ExecStart"][0] and "--autostart" not in u["ExecStart"][0]
    assert u["WorkingDirectory"] == [str(tmp_path / "w")]
    assert u["Restart"] == ["on-failure"] and int(u["RestartSec"][0]) >= 1
    assert u["After"] == ["network-online.target"] and u["Wants"] == ["network-online.target"]
    assert u["KillMode"] == ["process"]  # services outlive the agent (see the comment in the unit)
    assert "KillMode=process: stopping or restarting" in text
    assert u["WantedBy"] == ["multi-user.target"]
    assert any(e.startswith('"PYTHONPATH=') for e in u["Environment"])  # from source


def test_frozen_agent_unit_starts_the_binary_itself(tmp_path):
    cmd = agent_command("http://m:8080", tmp_path, frozen=True, executable="/opt/gdos/gdos-agent")
    u = unit_lines(unit_text(cmd))
    assert u["ExecStart"] == [f"/opt/gdos/gdos-agent --master http://m:8080 --work-dir {tmp_path}"]
    assert "Environment" not in u


def test_systemd_quoting_of_spaces_percent_and_dollar():
    assert quote("/opt/gdos/agent") == "/opt/gdos/agent"
    assert quote("/srv/my work") == '"/srv/my work"'
    assert quote("/srv/100%") == "/srv/100%%"
    assert quote("a$b") == "a$$b"
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("") == '""'


def test_systemd_install_twice_then_remove(tmp_path):
    os_ = FakeSystem()
    backend = Systemd(agent_command("http://m:8080", tmp_path))
    done = backend.install(os_)
    assert os_.commands() == [
        "systemctl daemon-reload",
        f"systemctl enable {UNIT}",
        f"systemctl start {UNIT}",
    ]
    assert os_.files[UNIT_PATH] == backend.render().encode()
    assert done[0] == f"wrote {UNIT_PATH}" and any("every boot" in d for d in done)

    os_.calls.clear()
    assert backend.install(os_) == []  # the second run changes nothing
    assert os_.commands() == [] and os_.writes == [UNIT_PATH]

    assert backend.uninstall(os_) == [
        f"stopped and disabled {UNIT} (the services it started keep running)",
        f"removed {UNIT_PATH}",
        "reloaded systemd (systemctl daemon-reload)",
    ]
    assert os_.commands() == [f"systemctl disable --now {UNIT}", "systemctl daemon-reload"]
    assert UNIT_PATH not in os_.files
    os_.calls.clear()
    assert backend.uninstall(os_) == [] and os_.calls == []  # nothing left to remove


def test_systemd_changed_settings_rewrite_and_restart(tmp_path):
    os_ = FakeSystem()
    Systemd(agent_command("http://m:8080", tmp_path)).install(os_)
    os_.calls.clear()
    done = Systemd(agent_command("http://other:8080", tmp_path)).install(os_)
    assert os_.commands() == ["systemctl daemon-reload", f"systemctl restart {UNIT}"]
    assert done[0] == f"updated {UNIT_PATH}"
    assert b"--master http://other:8080" in os_.files[UNIT_PATH]


@pytest.mark.parametrize(
    ("fake", "needed"),
    [
        (FakeSystem(admin=False), "needs root: run the same command with sudo"),
        (FakeSystem(tools=()), "systemctl was not found"),
        (FakeSystem(existing=(Path("/etc/systemd/system"),)), "systemd is not running as PID 1"),
    ],
)
def test_systemd_without_rights_names_what_is_needed(tmp_path, fake, needed, capsys):
    code = autostart.apply(
        args_for(enrolled(tmp_path / "w")), enrol=_no_enrol, system=fake, environ={}
    )
    assert code == 2
    assert needed in capsys.readouterr().err
    assert fake.files == {} and fake.calls == []  # nothing touched


def test_a_failing_systemctl_is_reported_with_its_output(tmp_path, capsys):
    fake = FakeSystem(fail="enable")
    code = autostart.apply(
        args_for(enrolled(tmp_path / "w")), enrol=_no_enrol, system=fake, environ={}
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"`/usr/bin/systemctl enable {UNIT}` failed (exit code 1): enable: Access denied" in err


def test_apply_says_what_it_did_then_that_nothing_changed(tmp_path, capsys):
    fake = FakeSystem()
    args = args_for(enrolled(tmp_path / "w"))
    assert autostart.apply(args, enrol=_no_enrol, system=fake, environ={}) == 0
    out = capsys.readouterr().out
    assert out.startswith("gdos-agent: autostart turned on (systemd):\n  - wrote ")
    assert autostart.apply(args, enrol=_no_enrol, system=fake, environ={}) == 0
    assert "autostart is already on (systemd); nothing changed" in capsys.readouterr().out
    args.autostart = "0"
    assert autostart.apply(args, enrol=_no_enrol, system=fake, environ={}) == 0
    assert "autostart turned off" in capsys.readouterr().out
    assert autostart.apply(args, enrol=_no_enrol, system=fake, environ={}) == 0
    assert "autostart is already off" in capsys.readouterr().out


def test_an_unenrolled_node_enrols_first_or_is_told_to(tmp_path, capsys):
    fake = FakeSystem()
    code = autostart.apply(args_for(tmp_path / "a"), enrol=_no_enrol, system=fake, environ={})
    assert code == 2
    assert "not enrolled yet" in capsys.readouterr().err and fake.files == {}

    enrolments = []
    args = args_for(tmp_path / "b", token="join-token-123")
    code = autostart.apply(
        args,
        enrol=lambda: enrolments.append(enrolled(args.work_dir)),
        system=fake,
        environ={},
    )
    assert code == 0 and len(enrolments) == 1
    assert b"join-token-123" not in fake.files[UNIT_PATH]  # never the token in the unit

    # Without the rights to install, nobody is enrolled for nothing.
    denied = FakeSystem(admin=False)
    args = args_for(tmp_path / "c", token="join-token-123")
    assert autostart.apply(args, enrol=_fail_enrol, system=denied, environ={}) == 2


def test_test_overrides_replace_the_unit_dir_and_systemctl(tmp_path):
    backend = autostart.backend_for(
        "linux",
        agent_command("http://m", tmp_path),
        {"GDOS_AGENT_SYSTEMD_DIR": str(tmp_path), "GDOS_AGENT_SYSTEMCTL": "/x/systemctl"},
    )
    assert isinstance(backend, Systemd)
    assert backend.path == tmp_path / UNIT and backend.systemctl == "/x/systemctl"
    assert not backend.check_host
    plain = autostart.backend_for("linux", agent_command("http://m", tmp_path), {})
    assert isinstance(plain, Systemd) and plain.path == UNIT_PATH and plain.check_host


# -- Windows: Task Scheduler ------------------------------------------------------------------


def _task(work_dir: Path) -> TaskScheduler:
    cmd = agent_command(
        "http://m:8080",
        work_dir,
        frozen=True,
        executable="/opt/GDOS Agent/gdos-agent.exe",  # paths are Windows ones on Windows
    )
    return TaskScheduler(cmd)


def test_task_xml_boots_as_system_restarts_and_never_times_out(tmp_path):
    data = _task(tmp_path / "my work").render().encode("utf-16")
    root = ET.fromstring(data)  # parses the UTF-16 document as schtasks would read it
    n = {"t": NS}
    assert root.tag == f"{{{NS}}}Task"
    assert root.findtext("t:Triggers/t:BootTrigger/t:Enabled", namespaces=n) == "true"
    assert root.findtext("t:Principals/t:Principal/t:UserId", namespaces=n) == "S-1-5-18"
    assert root.findtext("t:Principals/t:Principal/t:RunLevel", namespaces=n) == "HighestAvailable"
    settings = root.find("t:Settings", n)
    assert settings is not None
    assert settings.findtext("t:ExecutionTimeLimit", namespaces=n) == "PT0S"
    assert settings.findtext("t:RestartOnFailure/t:Interval", namespaces=n) == "PT1M"
    assert int(settings.findtext("t:RestartOnFailure/t:Count", namespaces=n) or 0) > 1
    assert settings.findtext("t:DisallowStartIfOnBatteries", namespaces=n) == "false"
    assert settings.findtext("t:Enabled", namespaces=n) == "true"
    exe = root.findtext("t:Actions/t:Exec/t:Command", namespaces=n)
    assert exe == "/opt/GDOS Agent/gdos-agent.exe"  # one element: no quoting needed
    arguments = root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=n)
    assert arguments == f'--master http://m:8080 --work-dir "{tmp_path / "my work"}"'
    assert root.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=n) == str(
        tmp_path / "my work"
    )


def test_schtasks_commands_twice_then_remove(tmp_path):
    fake = FakeSystem()
    task = _task(tmp_path)
    xml_path = tmp_path / "gdos-agent-task.xml"
    done = task.install(fake)
    assert fake.commands() == [
        f"schtasks /Create /XML {xml_path} /TN {TASK} /F",
        f"schtasks /Run /TN {TASK}",
    ]
    assert fake.files[xml_path].startswith(b"\xff\xfe")  # UTF-16 with its BOM
    assert "runs at boot" not in done[0] and "starts at boot as SYSTEM" in done[0]
    fake.calls.clear()
    assert task.install(fake) == [] and fake.commands() == []
    task.uninstall(fake)
    assert fake.commands() == [f"schtasks /End /TN {TASK}", f"schtasks /Delete /TN {TASK} /F"]
    assert xml_path not in fake.files


def test_schtasks_needs_an_elevated_prompt(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(autostart, "current_os", lambda: "windows")
    fake = FakeSystem(admin=False)
    assert autostart.apply(args_for(enrolled(tmp_path / "w")), enrol=_no_enrol, system=fake) == 2
    assert "Run as administrator" in capsys.readouterr().err
    assert fake.calls == [] and fake.files == {}


# -- macOS: launchd -------------------------------------------------------------------------


def test_launchd_plist_keeps_the_agent_alive(tmp_path):
    cmd = agent_command(
        "http://m:8080", tmp_path, frozen=True, executable="/usr/local/bin/gdos-agent"
    )
    plist = plistlib.loads(Launchd(cmd).render().encode())
    assert plist["Label"] == LABEL
    assert plist["ProgramArguments"] == [
        "/usr/local/bin/gdos-agent",
        "--master",
        "http://m:8080",
        "--work-dir",
        str(tmp_path),
    ]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["AbandonProcessGroup"] is True
    assert plist["WorkingDirectory"] == str(tmp_path)


def test_launchctl_commands_twice_then_remove(tmp_path):
    fake = FakeSystem()
    backend = Launchd(agent_command("http://m:8080", tmp_path))
    path = Path(f"/Library/LaunchDaemons/{LABEL}.plist")
    backend.install(fake)
    assert fake.commands() == [
        f"launchctl enable system/{LABEL}",
        f"launchctl bootstrap system {path}",
    ]
    fake.calls.clear()
    assert backend.install(fake) == [] and fake.commands() == []
    backend.uninstall(fake)
    assert fake.commands() == [f"launchctl bootout system/{LABEL}"]
    assert path not in fake.files
    with pytest.raises(AutostartError, match="needs root"):
        backend.install(FakeSystem(admin=False))


# -- the command line --------------------------------------------------------------------------


def test_autostart_print_shows_the_definition_and_installs_nothing(tmp_path, capsys):
    work = tmp_path / "w"
    assert (
        main(["--autostart-print", "linux", "--work-dir", str(work), "--master", "http://m"]) == 0
    )
    captured = capsys.readouterr()
    assert "[Service]" in captured.out and f"--work-dir {work}" in captured.out
    assert "/etc/systemd/system/gdos-agent.service" in captured.err
    assert not work.exists()
    # The seed's single-dash spelling works too.
    assert main(["-autostart_print", "windows", "-work_dir", str(work)]) == 0
    assert "<BootTrigger>" in capsys.readouterr().out


def test_the_boot_time_agent_keeps_the_least_privilege_flags(tmp_path, capsys):
    argv = ["--autostart-print", "linux", "--work-dir", str(tmp_path / "w"), "--master", "http://m"]
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert "--default-user" not in plain and "--log-roots" not in plain
    extra = ["--default-user", "svc", "--log-roots", "/var/log,/srv/logs"]
    assert main([*argv, *extra, "--download-retry-seconds", "60"]) == 0
    out = capsys.readouterr().out
    assert "--default-user svc --download-retry-seconds 60 --log-roots /var/log,/srv/logs" in out
    with pytest.raises(SystemExit):
        main([*argv, "--log-roots", "relative/logs"])
    assert "absolute folders" in capsys.readouterr().err


def test_version_prints_build_info(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gdos-agent 0.1.0\n")
    for field in ("commit", "built", "frozen     : no", "python"):
        assert field in out


def _no_enrol() -> None:
    raise AssertionError("enrolment was not expected")


def _fail_enrol() -> None:
    raise AssertionError("enrolled although autostart cannot be installed")
