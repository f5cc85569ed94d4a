import json
import re
from pathlib import Path

import pytest

from protocol.jsonc import strip_jsonc
from protocol.manifest import ManifestError, parse_manifest

PACKAGES_DOC = Path(__file__).resolve().parents[2] / "docs" / "packages.md"


def documented_example() -> str:
    text = PACKAGES_DOC.read_text()
    match = re.search(r"```jsonc\n(.*?)```", text, re.S)
    assert match, "docs/packages.md must carry the service.json example in a ```jsonc block"
    return match.group(1)


def test_documented_example_parses_as_written():
    m = parse_manifest(documented_example())
    assert m.name == "payment-service"
    assert m.entrypoint == "bin/app_linux"
    assert m.args == ["-c", "../conf/config.yaml"]
    assert m.log_paths["Access Log"] == "logs/access.log"
    assert m.user == "payments"
    assert m.restart_limit == 5


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
        ('{"name": "a", "version": "1", "entrypoint": "a", "user": "-x"}', "user"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "group": "a b"}', "group"),
        ('{"name": "a", "version": "1", "entrypoint": "a", "user": "root\\n"}', "user"),
        (
            '{"name": "a", "version": "1", "entrypoint": "a", "process_cmdline": "(a)\\\\1"}',
            "process_cmdline",
        ),
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


NAMES_REFUSED = ["abc\n", "abc\r\n", "\nabc", "-abc", "-", ".", "..", ".hidden", "_x", "a b", ""]
NAMES_ACCEPTED = ["a", "abc", "payment-service", "v1.0.2", "1.0.0-rc.1", "A_b-C.9", "x-"]


@pytest.mark.parametrize("field", ["name", "version"])
@pytest.mark.parametrize("value", NAMES_REFUSED)
def test_a_name_or_version_must_match_in_full(field, value):
    """No trailing newline (msgspec searches, and Python's `$` matches before a final newline),
    no leading '-' (an option to a command), no '.'/'..'."""
    data = {"name": "a", "version": "1", "entrypoint": "a", field: value}
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(data))
    problem = next(p for p in info.value.problems if p["field"] == field)
    if value:
        assert "must start with a letter or digit" in problem["message"]


@pytest.mark.parametrize("value", NAMES_ACCEPTED)
def test_ordinary_names_and_versions_still_pass(value):
    m = parse_manifest(json.dumps({"name": value, "version": value, "entrypoint": "a"}))
    assert (m.name, m.version) == (value, value)


@pytest.mark.parametrize("value", NAMES_REFUSED + NAMES_ACCEPTED)
def test_the_schema_form_of_the_name_rule_agrees_with_the_python_form(value):
    """REST bodies (pydantic, and the OpenAPI document) use NAME_SCHEMA_PATTERN; service.json uses
    NAME_PATTERN: both must accept exactly the same names."""
    from pydantic import BaseModel, Field, ValidationError

    from protocol.manifest import NAME_PATTERN, NAME_SCHEMA_PATTERN

    class Named(BaseModel):
        name: str = Field(pattern=NAME_SCHEMA_PATTERN)

    try:
        Named(name=value)
        schema_ok = True
    except ValidationError:
        schema_ok = False
    assert schema_ok == bool(NAME_PATTERN.search(value)) == (value in NAMES_ACCEPTED)


def test_unknown_fields_are_refused_with_a_suggestion_when_strict():
    body = {"name": "a", "version": "1", "entrypoint": "a", "restrat": "on-failure"}
    body["health"] = {"tcp": 80, "intervall": 2}
    body["log_rotate"] = {"backups": 2, "zzz": 1}
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(body), strict=True)
    assert "unknown field restrat (did you mean restart?)" in str(info.value)
    problems = {p["field"]: p["message"] for p in info.value.problems}
    assert problems["health.intervall"] == "unknown field health.intervall (did you mean interval?)"
    assert problems["log_rotate.zzz"] == "unknown field log_rotate.zzz"
    # An agent reading a package takes what it does not know (a newer master's fields).
    assert parse_manifest(json.dumps(body)).restart == "no"


def test_the_documented_example_has_no_unknown_field():
    assert parse_manifest(documented_example(), strict=True).name == "payment-service"
