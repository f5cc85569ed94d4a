import re
from pathlib import Path

import pytest

from protocol.jsonc import strip_jsonc
from protocol.manifest import ManifestError, parse_manifest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    match = re.search(r"```jsonc\n(.*?)```", text, re.S)
    assert match, "README must carry the service.json example in a ```jsonc block"
    return match.group(1)


def test_readme_example_parses_as_written():
    m = parse_manifest(readme_example())
    assert m.name == "payment-service"
    assert m.entrypoint == "bin/app_linux"
    assert m.args == ["-c", "../conf/config.yaml"]
    assert m.log_paths["Access Log"] == "logs/access.log"


def test_comments_and_trailing_commas():
    text = """{
      // comment with "quotes" and a , comma
      "name": "a", /* block */ "version": "1",
      "entrypoint": "run.sh",
      "args": ["x", "// not a comment", "y",],
    }"""
    m = parse_manifest(text)
    assert m.args == ["x", "// not a comment", "y"]


def test_strip_keeps_strings_with_escapes():
    assert strip_jsonc('{"a": "q\\"//x", }') == '{"a": "q\\"//x"  }'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"version": "1", "entrypoint": "a"}', "name"),
        ('{"name": "a b", "version": "1", "entrypoint": "a"}', "name"),
        ('{"name": "a", "entrypoint": "a"}', "version"),
        ('{"name": "a", "version": "1"}', "entrypoint"),
        ('{"name": "a", "version": "1", "entrypoint": "../x"}', "entrypoint"),
        ('{"name": "a", "version": "1", "entrypoint": "/bin/sh"}', "entrypoint"),
        ('{"name": "a", "version": "1", "entrypoint": "C:\\\\x.exe"}', "entrypoint"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "args": "x"}', "args"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "args": [1]}', "args.0"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "os": "beos"}', "os"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "stop_timeout": -1}', "stop_timeout"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "restart": "sometimes"}', "restart"),
        (
            '{"name": "a", "version": "1", "entrypoint": "a", "health": {"tcp": 99999}}',
            "health.tcp",
        ),
        ('{"name": "a", "version": "1", "entrypoint": "a", "env": {"A": 1}}', "env.A"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "env": {"A=B": "1"}}', "env.A=B"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "env": {"": "1"}}', "env"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "env": {"A": "\\u0000"}}', "env.A"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "args": ["x", "\\u0000"]}', "args.1"),
        (
            '{"name": "a", "version": "1", "entrypoint": "a", "stop_args": ["\\u0000"]}',
            "stop_args.0",
        ),
        (
            '{"name": "a", "version": "1", "entrypoint": "a", "health": {"command": ["", "x"]}}',
            "health",
        ),
        ("[1, 2]", "service.json"),
        ('{"name": ', "service.json"),
    ],
)
def test_each_violation_names_its_field(body, field):
    with pytest.raises(ManifestError) as info:
        parse_manifest(body)
    fields = [p["field"] for p in info.value.problems]
    assert field in fields, fields


def test_several_violations_are_all_reported():
    with pytest.raises(ManifestError) as info:
        parse_manifest('{"name": "a b", "args": 3}')
    fields = {p["field"] for p in info.value.problems}
    assert {"name", "version", "entrypoint", "args"} <= fields


def test_malformed_json_gives_position():
    with pytest.raises(ManifestError) as info:
        parse_manifest('{\n  "name": "a",\n  "version": \n}')
    assert "line" in info.value.problems[0]["message"]


def test_match_strategy_needs_a_target():
    with pytest.raises(ManifestError):
        parse_manifest('{"name": "a", "version": "1", "entrypoint": "a", "pid_strategy": "match"}')
