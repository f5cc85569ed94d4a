"""The agent's open-file limit, raised in a real process started with a soft limit of 1,024."""

import subprocess
import sys

import pytest

pytest.importorskip("resource")

SCRIPT = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
from agent.limits import raise_open_files
got = raise_open_files({wanted})
print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def run(wanted: int) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(wanted=wanted)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    got, soft, hard = (int(x) for x in out)
    return got, soft, hard


def test_the_soft_limit_is_raised_within_the_hard_one() -> None:
    got, soft, hard = run(4096)
    expected = 4096 if hard < 0 or hard >= 4096 else hard
    assert got == soft == expected


def test_a_soft_limit_already_high_enough_is_left_alone() -> None:
    got, soft, _ = run(512)
    assert got == soft == 1024
