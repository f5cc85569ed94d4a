"""`--self-check`: every module of a program imported, the first failure named, exit 1."""

import subprocess
import sys
import types

import pytest

from protocol import frozen, selfcheck
from tests.support import ROOT, child_env


def test_source_modules_are_the_packages_files_without_the_migration_scripts():
    names = selfcheck.source_modules(["master", "protocol"])
    assert "master" in names and "master.__main__" in names and "protocol.selfcheck" in names
    assert "master.db.session" in names
    assert not [n for n in names if "migrations" in n]  # Alembic's scripts, not a package
    assert len(names) == len(set(names))


def test_a_program_reaches_its_package_and_the_gdos_modules_it_imports_only():
    agent = selfcheck.reachable_modules("agent")
    assert "agent.autostart.systemd" in agent and "protocol.messages" in agent
    # The REST models (pydantic) are the master's and the console's: the agent stays small.
    assert "protocol.rest" not in agent and not [m for m in agent if m.startswith("master")]
    console = selfcheck.reachable_modules("console")
    assert "console.ui.charts" in console and "protocol.rest" in console
    assert not [m for m in console if m.startswith(("master", "agent"))]


def test_a_module_that_does_not_import_is_named_and_the_exit_is_1(capsys):
    code = selfcheck.run("gdos-test", "protocol", loaded_by_name=["gdos_no_such_module"])
    assert code == 1
    out, err = capsys.readouterr()
    assert "self-check failed: cannot import gdos_no_such_module: ModuleNotFoundError" in err
    assert "passed" not in out


def test_a_failing_check_is_named_after_the_imports(capsys):
    def broken() -> str:
        raise OSError("no such file: env.py")

    code = selfcheck.run("gdos-test", "protocol", checks=[("migrations", broken)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "gdos-test: imported" in out
    assert "self-check failed: migrations: OSError: no such file: env.py" in err


def test_a_frozen_program_imports_the_modules_its_build_listed(monkeypatch, capsys):
    """A bundle that left a module out fails on it, though walking the bundle would not see it."""
    generated = types.ModuleType(frozen.BUILD_INFO_MODULE)
    generated.MODULES = {"agent": ("protocol", "agent.left_out_by_the_build"), "master": ()}
    monkeypatch.setitem(sys.modules, frozen.BUILD_INFO_MODULE, generated)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert selfcheck.program_modules("agent") == ["protocol", "agent.left_out_by_the_build"]
    assert selfcheck.run("gdos-agent", "agent") == 1
    assert "cannot import agent.left_out_by_the_build" in capsys.readouterr().err


def test_a_frozen_program_without_a_module_list_fails(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, frozen.BUILD_INFO_MODULE, types.ModuleType("empty"))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert selfcheck.run("gdos-agent", "agent") == 1
    assert "the build carries no module list for agent" in capsys.readouterr().err


@pytest.mark.slow
def test_the_console_passes_its_self_check_from_source_and_so_do_master_and_agent():
    """From source the console's check runs `-m master` and `-m agent --self-check` too."""
    done = subprocess.run(
        [sys.executable, "-m", "console", "--self-check"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "gdos-console: resources: style sheet and icon" in done.stdout
    assert "gdos-master and gdos-agent passed theirs" in done.stdout
    assert done.stdout.rstrip().endswith("gdos-console: self-check passed")


def test_the_masters_migrations_run_in_memory():
    from master.selfcheck import migrations

    assert migrations().startswith(
        f"{len(list((ROOT / 'master/db/migrations/versions').glob('*.py')))} revisions applied in memory, head "
    )


@pytest.mark.parametrize("program", ["agent", "console"])
def test_agent_and_console_print_their_version_and_build_info(program, capsys):
    main = __import__(f"{program}.__main__", fromlist=["main"]).main
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gdos-{program} ")
    assert "frozen     : no" in out and "commit" in out
