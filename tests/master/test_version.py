"""`gdos-master --version` prints version and build info."""

from master.__main__ import main
from protocol import __version__


def test_master_version_prints_build_info(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gdos-master {__version__}\n")
    assert "commit" in out and "frozen     : no" in out and "python" in out
