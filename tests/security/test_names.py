"""Names and versions match their pattern in full, in service.json and in every REST body that
uses it: no trailing newline (msgspec searches, and Python's `$` matches before a final newline),
no leading '-' (it reads as an option), no '.' or '..'."""

import json

import pytest
from pydantic import BaseModel

from protocol.manifest import NAME_SCHEMA_PATTERN
from tests.e2e.test_bad_packages import leftovers, zip_of
from tests.security.test_json_scalars import MODELS, _refused

REFUSED = ["abc\n", "-abc", "..", ".x"]


def name_fields() -> list[tuple[type[BaseModel], str]]:
    found = []
    for model in MODELS:
        for name, field in model.model_fields.items():
            patterns = [getattr(m, "pattern", None) for m in field.metadata]
            if NAME_SCHEMA_PATTERN in patterns:
                found.append((model, name))
    return sorted(found, key=lambda t: (t[0].__name__, t[1]))


FIELDS = name_fields()


def test_the_walk_finds_the_name_fields():
    found = {(m.__name__, n) for m, n in FIELDS}
    assert {("SystemIn", "name"), ("ModuleIn", "name"), ("AdoptIn", "name")} <= found
    assert ("UserIn", "username") in found


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_rest_name_fields_match_in_full(model, name):
    for value in REFUSED:
        assert _refused(model, name, value), f"{model.__name__}.{name} took {value!r}"
    assert not _refused(model, name, "payment-service.v2")


def test_the_master_refuses_bad_names_and_keeps_good_ones(shared_master, shared_api, tmp_path):
    for value in REFUSED:
        r = shared_api.request("POST", "/systems", json={"name": value})
        assert r.status_code == 422, (value, r.text)
        assert r.json()["error"]["details"]["problems"][0]["field"] == "name"
        r = shared_api.request(
            "POST", "/users", json={"username": value, "password": "long-enough", "role": "viewer"}
        )
        assert r.status_code == 422, (value, r.text)
    names = [s["name"] for s in shared_api.get("/systems")]
    assert not any(n in REFUSED for n in names)
    # Nothing else changed: an ordinary name still goes through.
    shared_api.post("/systems", {"name": "names-ok-1.0"}, expect=201)


@pytest.mark.parametrize(("field", "value"), [("name", "svc\n"), ("version", "-1")])
def test_a_package_with_a_bad_name_is_422_and_leaves_nothing(
    shared_master, shared_api, tmp_path, field, value
):
    manifest = {"name": "svc", "version": "1", "entrypoint": "bin/run", field: value}
    path = zip_of(
        tmp_path / "bad.zip", {"service.json": json.dumps(manifest), "bin/run": "#!/bin/sh\n"}
    )
    before = leftovers(shared_master)
    r = shared_api.upload(path, expect=422)
    problems = r.json()["error"]["details"]["problems"]
    assert [p["field"] for p in problems] == [field]
    assert "must start with a letter or digit" in problems[0]["message"]
    assert leftovers(shared_master) == before
