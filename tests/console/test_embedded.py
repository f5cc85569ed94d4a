"""The embedded master's command line (no Qt, no master started)."""

from pathlib import Path

import pytest

from console.embedded import EmbeddedMaster, admin_password, master_command
from master.cli import admin_password as password_given
from master.cli import parse_args


@pytest.mark.parametrize("password", ["-leading-dash", "--looks-like-an-option", "plain_Pw-1"])
def test_the_password_reaches_the_master_by_file_whatever_it_begins_with(
    tmp_path: Path, password: str
) -> None:
    """secrets.token_urlsafe may begin with "-" (argparse once took it for an option); it now
    goes by a 0600 file, so it is never on the command line at all."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "console-admin-password").write_text(password + "\n")
    embedded = EmbeddedMaster(data, port=18080)
    embedded.password, new = admin_password(data)
    assert not new and embedded.password == password
    argv = embedded.command()[len(master_command()) :]
    assert password not in " ".join(argv)
    args = parse_args(argv)
    assert password_given(args) == password
    assert args.with_agent


def test_a_new_password_file_is_private(tmp_path: Path) -> None:
    password, new = admin_password(tmp_path / "fresh")
    path = tmp_path / "fresh" / "console-admin-password"
    assert new and path.read_text().strip() == password
    assert path.stat().st_mode & 0o777 == 0o600
    # Once the master has written its own, that one is used and no file is named.
    (tmp_path / "fresh" / "initial-admin-password").write_text("masters-own\n")
    embedded = EmbeddedMaster(tmp_path / "fresh", port=18080)
    assert "--admin-password-file" not in embedded.command()
    assert admin_password(tmp_path / "fresh") == ("masters-own", False)
