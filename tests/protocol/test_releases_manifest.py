"""service.json's release fields (keep_releases, shared_paths), a health check's `${PORT}`, and
`${VAR}` expansion."""

import json
import re

import pytest

from protocol.expand import MissingVariable, expand, references
from protocol.manifest import HealthCheck, ManifestError, parse_manifest, port_of
from protocol.rest import HEALTH_SCHEMA


def manifest(**fields: object) -> str:
    return json.dumps({"name": "a", "version": "1", "entrypoint": "bin/run", **fields})


def test_release_fields_and_their_defaults():
    m = parse_manifest(manifest())
    assert (m.keep_releases, m.shared_paths) == (3, [])
    m = parse_manifest(manifest(keep_releases=5, shared_paths=["conf/local.yaml", "uploads/"]))
    assert (m.keep_releases, m.shared_paths) == (5, ["conf/local.yaml", "uploads/"])


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"shared_paths": ["../etc"]}, "no '..'"),
        ({"shared_paths": ["/var/data"]}, "no '..'"),
        ({"shared_paths": ["C:\\data"]}, "no '..'"),
        ({"shared_paths": ["a/../../b"]}, "no '..'"),
        ({"shared_paths": ["."]}, "cannot be shared"),
        ({"shared_paths": ["service.json"]}, "cannot be shared"),
        ({"shared_paths": ["data/", "data/x"]}, "overlaps"),
        ({"shared_paths": ["bin/"]}, "would replace the entrypoint"),
        ({"keep_releases": 0}, ">= 1"),
    ],
)
def test_bad_release_fields_are_refused_naming_the_field(fields: dict, needle: str):
    with pytest.raises(ManifestError) as info:
        parse_manifest(manifest(**fields))
    [problem] = info.value.problems
    assert problem["field"].split(".")[0] in fields or problem["field"] == "service.json"
    assert needle in problem["message"], problem


def test_a_health_check_may_name_its_port_by_variable():
    assert HealthCheck(tcp="${PORT}").tcp == "${PORT}"
    assert HealthCheck(http="${BASE}/health").http == "${BASE}/health"
    for bad in ("eighty", "0", "70000", ""):
        with pytest.raises(ValueError, match="port"):
            HealthCheck(tcp=bad)
    assert port_of("8080") == 8080 and port_of(8080) == 8080
    with pytest.raises(ValueError, match="not a port"):
        port_of("x")


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        ("80", True),
        ("65535", True),
        ("x${P}y", True),
        ("1${P}", True),
        ("65536", False),
        ("080", False),
        ("$${P}", False),  # a literal, no variable
        ("a$$${P}", False),
        ("a\n${P}", False),
        ("${1}", False),
    ],
)
def test_the_schema_takes_the_same_port_text_as_the_health_check(text: str, taken: bool):
    schema = HEALTH_SCHEMA["properties"]["tcp"]["anyOf"][1]["pattern"]
    assert (re.compile(schema).search(text) is not None) == taken
    try:
        HealthCheck(tcp=text)
    except ValueError:
        assert not taken
    else:
        assert taken


def test_expansion_takes_braced_names_only_and_never_makes_an_empty_string():
    env = {"PORT": "8001", "HOST": "h"}
    assert expand("--port=${PORT}", env) == "--port=8001"
    assert expand("$PORT ${HOST}:${PORT}", env) == "$PORT h:8001"
    assert expand("$${PORT}", env) == "${PORT}"  # escaped
    assert references("${A}-$${B}-${C}") == ["A", "C"]
    with pytest.raises(MissingVariable) as info:
        expand("${NOPE}", env, "argument 2")
    assert str(info.value) == "argument 2 names ${NOPE}, which is not in the instance's environment"
