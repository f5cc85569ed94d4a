"""Build info for --version, and the environment a frozen program hands to its children."""

import sys
import types

import pytest

from protocol import __version__, frozen


@pytest.fixture(autouse=True)
def fresh_build_info():
    frozen.build_info.cache_clear()
    yield
    frozen.build_info.cache_clear()


def test_from_source_the_commit_comes_from_git():
    info = frozen.build_info()
    assert info["version"] == __version__ and info["frozen"] == "no"
    assert info["python"] == sys.version.split()[0]
    described = frozen.git_describe(frozen.SOURCE_ROOT)
    assert info["commit"] == (described or "unknown")
    assert "source" in info["build_date"]


def test_a_frozen_build_reports_the_generated_module(monkeypatch):
    generated = types.ModuleType(frozen.BUILD_INFO_MODULE)
    generated.COMMIT = "abc1234"
    generated.BUILD_DATE = "2030-01-02T03:04:05Z"
    monkeypatch.setitem(sys.modules, frozen.BUILD_INFO_MODULE, generated)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    text = frozen.version_text("gdos-agent")
    assert text.splitlines()[0] == f"gdos-agent {__version__}"
    assert "commit     : abc1234" in text
    assert "built      : 2030-01-02T03:04:05Z" in text
    assert "frozen     : yes" in text


def test_git_describe_outside_a_checkout_is_none(tmp_path):
    assert frozen.git_describe(tmp_path) is None


def test_child_environ_drops_what_the_bootloader_added():
    base = {
        "PATH": "/usr/bin",
        "LD_LIBRARY_PATH": "/tmp/_MEI123:/opt/lib",
        "LD_LIBRARY_PATH_ORIG": "/opt/lib",
        "_PYI_ARCHIVE_FILE": "/usr/local/bin/gdos-agent",
        "_PYI_APPLICATION_HOME_DIR": "/tmp/_MEI123",
        "_MEIPASS2": "/tmp/_MEI123",
    }
    env = frozen.child_environ(base, frozen=True)
    assert env == {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"}
    # No original value: the bundle's own path goes away entirely.
    env = frozen.child_environ({"LD_LIBRARY_PATH": "/tmp/_MEI9"}, frozen=True)
    assert env == {}
    # From source nothing of the user's is touched.
    assert frozen.child_environ({"LD_LIBRARY_PATH": "/opt/lib"}, frozen=False) == {
        "LD_LIBRARY_PATH": "/opt/lib"
    }
