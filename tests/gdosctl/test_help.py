"""Every command explains itself with an example; --version and --help stay light (no HTTP
client, no tables library, no Qt)."""

import json
import subprocess
import sys

import click
import pytest

from gdosctl.cli import COMMANDS, cli
from tests.support import child_env


def every_command():
    ctx = click.Context(cli, info_name="gdosctl")
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        yield name, cmd
        if isinstance(cmd, click.Group):
            for sub, subcmd in cmd.commands.items():
                yield f"{name} {sub}", subcmd


@pytest.mark.parametrize(("name", "cmd"), list(every_command()), ids=lambda v: str(v))
def test_every_command_has_help_with_an_example(name, cmd):
    assert cmd.help and "Example" in cmd.help, name


PROBE = """
import json, sys
sys.modules["PySide6"] = None  # any import of Qt fails
sys.argv = ["gdosctl", *json.loads(sys.argv[1])]
from gdosctl.__main__ import main
try:
    main()
except SystemExit:
    pass
heavy = ("httpx", "rich", "pydantic", "yaml", "console.client", "websockets")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["system", "--help"], ["ps", "--help"]]
)
def test_version_and_help_import_nothing_heavy(args):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=True,
    )
    *shown, loaded = done.stdout.strip().splitlines()
    assert json.loads(loaded) == []
    if args == ["--version"]:
        assert shown == ["gdosctl 0.1.0"]
