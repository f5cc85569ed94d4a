"""The embedded master's command line (no Qt, no master started)."""

from pathlib import Path

import pytest

from console.embedded import EmbeddedMaster, master_command
from master.cli import parse_args


@pytest.mark.parametrize("password", ["-leading-dash", "--looks-like-an-option", "plain_Pw-1"])
def test_the_generated_password_reaches_the_master_whatever_it_begins_with(
    tmp_path: Path, password: str
) -> None:
    """secrets.token_urlsafe may begin with "-": passed as two words, argparse refused it and
    the embedded master did not start (seen once in the console e2e test)."""
    embedded = EmbeddedMaster(tmp_path / "data", port=18080)
    embedded.password = password
    argv = embedded.command()[len(master_command()) :]
    args = parse_args(argv)
    assert args.admin_password == password
    assert args.with_agent
