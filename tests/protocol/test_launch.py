"""The rules of what a process can be started with, as a table: each refusal names the key and
says what to change; the largest values exec takes are accepted."""

import pytest

from protocol.launch import (
    MAX_STRING_BYTES,
    MAX_TOTAL_BYTES,
    LaunchError,
    check_args,
    check_command,
    check_env,
    check_total,
)
from protocol.manifest import HealthCheck, ManifestError, manifest_from_data


@pytest.mark.parametrize(
    ("env", "where", "words"),
    [
        ({"": "x"}, None, "empty name"),
        ({"A=B": "x"}, "A=B", "'='"),
        ({"A\x00": "x"}, "A\\x00", "NUL"),
        ({"A": "x\x00"}, "A", "NUL"),
        ({"A": "x" * (MAX_STRING_BYTES - 2)}, "A", "128 KiB"),  # A=...\0 is one byte over
        ({"A": "é" * (MAX_STRING_BYTES // 2)}, "A", "bytes"),  # counted in UTF-8, not characters
    ],
)
def test_env_that_cannot_run(env, where, words):
    with pytest.raises(LaunchError) as info:
        check_env(env)
    assert info.value.where == where and words in str(info.value)
    assert str(info.value).split(": ")[-1].startswith(("rename", "remove", "shorten", "name"))


@pytest.mark.parametrize(
    ("args", "where", "words"),
    [
        (["ok", "a\x00"], "1", "NUL"),
        (["x" * MAX_STRING_BYTES], "0", "128 KiB"),
    ],
)
def test_args_that_cannot_run(args, where, words):
    with pytest.raises(LaunchError) as info:
        check_args(args)
    assert info.value.where == where and words in str(info.value)


def test_the_largest_that_fits_is_taken():
    check_env({"A": "x" * (MAX_STRING_BYTES - 3), "B": "=\n\t é"})  # A=value and NUL: 128 KiB
    check_args(["", "x" * (MAX_STRING_BYTES - 1)])
    one = MAX_TOTAL_BYTES // 8  # strings with their NUL add up to exactly 1 MiB
    check_total({"E": "x" * (one - 3)}, ["y" * (one - 1)] * 7)
    with pytest.raises(LaunchError) as info:
        check_total({"E": "x" * (one - 2)}, ["y" * (one - 1)] * 7)
    assert info.value.where == "env.E" and "1 MiB" in str(info.value)


@pytest.mark.parametrize("words", [[], [""], ["", "x"]])
def test_a_command_needs_a_program(words):
    with pytest.raises(LaunchError, match="needs a program"):
        check_command(words)


def test_service_json_and_health_commands_follow_the_same_rules():
    with pytest.raises(ValueError, match=r"command\.1: contains a NUL"):
        HealthCheck.from_data({"command": ["check", "\x00"]})
    big = "x" * 200_000
    with pytest.raises(ManifestError) as info:
        manifest_from_data(
            {
                "name": "a",
                "version": "1",
                "entrypoint": "a",
                "env": {"E": big[:100_000]},
                "args": [big[:100_000]] * 10,
            }
        )
    assert info.value.problems[0]["field"] == "env.E"
