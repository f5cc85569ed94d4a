"""Modules and adopt bodies against a real master: env and args that no process could be started
with are refused with a 422 naming the key, and nothing changes; nulls that mean something
(version: newest, args: the package's) still work."""

import pytest

from protocol.launch import MAX_STRING_BYTES
from tests.master.test_api_auth import error_of
from tests.support import Api, build_package

BIG = "x" * 100_000  # ten of these fit in one start (1 MiB), eleven do not


@pytest.fixture(scope="module")
def module(shared_api: Api, tmp_path_factory: pytest.TempPathFactory) -> dict:
    shared_api.upload(build_package(tmp_path_factory.mktemp("pkg"), name="modpkg", version="1"))
    system = shared_api.post("/systems", {"name": "modsys"})
    return shared_api.post(
        f"/systems/{system['id']}/modules",
        {"name": "m", "package": "modpkg", "env": {"KEEP": "1"}, "args": ["--keep"]},
    )


def refused(r, field: str, words: str) -> None:
    assert r.status_code == 422, r.text[:500]
    err = error_of(r)
    assert err["details"]["field"] == field, err
    assert err["message"].startswith(f"{field}: ") and words in err["message"], err


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        # What fuzzing found: a 500 (NOT NULL), and two envs execve can never take.
        ({"start_order": None}, "start_order", "cannot be null"),
        ({"env": {"": "x"}}, "env", "empty name"),
        ({"env": {"a": "\x00"}}, "env.a", "NUL"),
        ({"env": {"A=B": "x"}}, "env.A=B", "'='"),
        ({"env": {"A\x00": "x"}}, "env.A\\x00", "NUL"),
        ({"env": None}, "env", "cannot be null"),
        ({"args": ["ok", "b\x00d"]}, "args.1", "NUL"),
        ({"env": {"HUGE": "x" * MAX_STRING_BYTES}}, "env.HUGE", "128 KiB"),
        ({"args": ["x" * MAX_STRING_BYTES]}, "args.0", "128 KiB"),
    ],
)
def test_a_patch_that_cannot_run_is_refused_and_changes_nothing(
    shared_api, module, body, field, words
):
    r = shared_api.request("PATCH", f"/modules/{module['id']}", json=body)
    refused(r, field, words)
    system = shared_api.get(f"/systems/{module['system_id']}")
    assert system["modules"] == [module]


def test_a_body_over_the_masters_limit_is_413_before_its_args_are_read(shared_api, module):
    """env and args over 1 MiB in one body: the body cap (--max-body-bytes) refuses it first."""
    r = shared_api.request("PATCH", f"/modules/{module['id']}", json={"args": [BIG] * 11})
    assert r.status_code == 413, r.text[:500]
    assert error_of(r)["code"] == "too_large"
    system = shared_api.get(f"/systems/{module['system_id']}")
    assert system["modules"] == [module]


def test_the_largest_that_can_run_is_taken(shared_api, module):
    env = {"A": "x" * (MAX_STRING_BYTES - len("A=") - 1)}  # NAME=value and its NUL: 128 KiB
    args = ["y" * (MAX_STRING_BYTES - 1)]
    r = shared_api.request("PATCH", f"/modules/{module['id']}", json={"env": env, "args": args})
    assert r.status_code == 200, r.text[:500]
    restore = {"env": module["env"], "args": module["args"]}
    shared_api.request("PATCH", f"/modules/{module['id']}", json=restore, expect=200)


def test_a_patch_is_checked_with_what_it_keeps(shared_api, module):
    """env alone fits, but not with the args the module already has."""
    shared_api.request("PATCH", f"/modules/{module['id']}", json={"args": [BIG] * 5}, expect=200)
    try:
        r = shared_api.request(
            "PATCH", f"/modules/{module['id']}", json={"env": {f"E{i}": BIG for i in range(6)}}
        )
        refused(r, "env.E0", "1 MiB")
    finally:
        shared_api.request("PATCH", f"/modules/{module['id']}", json={"args": ["--keep"]})


def test_nulls_that_mean_something_still_work(shared_api, module):
    out = shared_api.request(
        "PATCH", f"/modules/{module['id']}", json={"version": None, "args": None}, expect=200
    ).json()
    assert out["version"] is None and out["args"] is None and out["env"] == {"KEEP": "1"}
    shared_api.request("PATCH", f"/modules/{module['id']}", json={"args": ["--keep"]}, expect=200)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"env": {"A=B": "1"}}, "env.A=B", "'='"),
        ({"args": ["\x00"]}, "args.0", "NUL"),
        # (over 1 MiB in all cannot fit in one body under the default --max-body-bytes)
        ({"env": {"HUGE": "x" * MAX_STRING_BYTES}}, "env.HUGE", "128 KiB"),
    ],
)
def test_a_module_that_cannot_run_is_not_created(shared_api, module, body, field, words):
    r = shared_api.request(
        "POST",
        f"/systems/{module['system_id']}/modules",
        json={"name": "never", "package": "modpkg", **body},
    )
    refused(r, field, words)
    assert [m["name"] for m in shared_api.get(f"/systems/{module['system_id']}")["modules"]] == [
        "m"
    ]


@pytest.mark.parametrize(
    ("command", "field", "words"),
    [
        (["prog", "a\x00"], "start_command.1", "NUL"),
        (["", "x"], "start_command", "needs a program"),
        ([], "start_command", "needs a program"),
        ("   ", "start_command", "blank"),
        ("run \x00", "start_command.0", "NUL"),
    ],
)
def test_an_adopt_command_that_cannot_run_is_refused(shared_api, module, command, field, words):
    body = {
        "system_id": module["system_id"],
        "node_id": "no-such-node",
        "name": "adopted",
        "strategy": "process_name",
        "process_name": "sleep",
        "start_command": command,
    }
    refused(shared_api.request("POST", "/instances/adopt", json=body), field, words)
    # An argument may be empty; only the program may not (the node is what is missing here).
    body["start_command"] = ["prog", ""]
    assert shared_api.request("POST", "/instances/adopt", json=body).status_code == 404


@pytest.mark.parametrize(
    ("health", "status"),
    [
        ({"tcp": 8080.0}, 404),  # JSON Schema's integer: the body is valid, the node is missing
        ({"tcp": 8080.5}, 422),
        ({}, 422),  # exactly one of tcp, http, command
        ({"command": ["check", "\x00"]}, 422),
    ],
)
def test_an_adopt_health_check_follows_its_schema(shared_api, module, health, status):
    body = {
        "system_id": module["system_id"],
        "node_id": "no-such-node",
        "name": "adopted",
        "strategy": "process_name",
        "process_name": "sleep",
        "health": health,
    }
    r = shared_api.request("POST", "/instances/adopt", json=body)
    assert r.status_code == status, r.text
