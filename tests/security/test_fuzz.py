"""API fuzzing with schemathesis against the master's own OpenAPI document.

Every generated request, valid or not, must get an answer that is not a 500, matches the
documented schema and status codes, and never carries a traceback. All four phases run:
examples and coverage once (they enumerate the schema, so another seed re-sends the same
cases), fuzzing and stateful under each seed: fixed ones, and one drawn at random and printed,
so that a failure can be replayed with GDOS_FUZZ_SEEDS. A failure shows schemathesis' report,
with the `curl` command that reproduces each case.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.security.st_hooks import PACKAGE_NAMES
from tests.support import Api, Master, build_package

# Wall time of all schemathesis runs together: the clock, not a case count, ends each run, so
# another machine reaches other cases. Explore beyond CI with e.g. GDOS_FUZZ_SECONDS=900, and
# GDOS_FUZZ_SEEDS=7,8,9 (the fixed seeds are left out then).
BUDGET_SECONDS = int(os.environ.get("GDOS_FUZZ_SECONDS", "140"))
FIXED_SEEDS = (1, 2)
# What a schemathesis run costs beyond its --max-time (start, schema load, report). A run that
# overruns leaves less to the next ones: each gets its share of what is left.
START_SECONDS = 4
# How long past its time a run may go before it is interrupted (its report still comes).
GRACE_SECONDS = 10
# Schemathesis' exit code after Ctrl-C, or death by SIGINT when it lands outside its handler.
INTERRUPTED = (130, -signal.SIGINT)

# Examples and coverage once, then fuzzing and stateful for each seed: shares of the budget.
# Stateful has runs of its own: in one run with fuzzing it gets only what fuzzing leaves, and
# a loaded machine leaves it nothing.
COVERAGE_SHARE, FUZZING_SHARE, STATEFUL_SHARE = 0.15, 0.45, 0.4

# The suite's 300 s timeout would cut a longer budget short.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(300, BUDGET_SECONDS + 150))]


def seeds() -> list[int]:
    given = os.environ.get("GDOS_FUZZ_SEEDS", os.environ.get("GDOS_FUZZ_SEED", ""))
    if given:
        return [int(s) for s in given.split(",")]
    return [*FIXED_SEEDS, random.SystemRandom().randrange(1 << 31)]


@dataclass
class Run:
    seed: int
    phases: str
    share: float


def plan(runs: list[int]) -> list[Run]:
    out = [Run(runs[0], "examples,coverage", COVERAGE_SHARE)]
    for seed in runs:
        out.append(Run(seed, "fuzzing", FUZZING_SHARE / len(runs)))
        out.append(Run(seed, "stateful", STATEFUL_SHARE / len(runs)))
    return out


def known_ids(master: Master, api: Api, tag: str, folder: Path) -> dict[str, list[str]]:
    """A few resources of each kind for the runs to reach, by the field names that carry them
    (made anew for each seed: a run deletes some)."""
    packages = {
        name: api.upload(build_package(folder, name=name, version=f"0-{tag}")).json()["id"]
        for name in PACKAGE_NAMES
    }
    systems = [api.post("/systems", {"name": f"fz-{tag}-{i}"})["id"] for i in range(2)]
    modules = [
        api.post(f"/systems/{sid}/modules", {"name": "fz", "package": name})["id"]
        for sid, name in zip(systems, PACKAGE_NAMES, strict=True)
    ]
    node = api.client.post(
        "/api/v1/agent/enroll",
        json={"join_token": master.join_token, "host": {"hostname": f"fz-{tag}"}},
    ).json()["node_id"]
    rule = api.post(
        "/alert-rules", {"name": f"fz-{tag}", "metric": "state", "op": "==", "threshold": "failed"}
    )["id"]
    silence = api.post("/silences", {"matcher": {"rule_id": rule}, "duration_seconds": 600})["id"]
    token = api.post("/join-tokens", {"ttl_seconds": 600})["id"]
    user = api.post(
        "/users", {"username": f"fz-{tag}", "password": "fz-password", "role": "viewer"}
    )
    upload = api.client.post(
        "/api/v1/packages/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"}
    ).json()["id"]
    operation = api.post(f"/systems/{systems[0]}/start")["operation_id"]
    return {
        "system_id": systems,
        "module_id": modules,
        "node_id": [node],
        "rule_id": [rule],
        "silence_id": [silence],
        "token_id": [token],
        "username": [user["username"]],
        "upload_id": [upload],
        "operation_id": [operation],
        "package_id": list(packages.values()),
        "package": list(packages),
    }


def schemathesis_run(
    master: Master, api: Api, run: Run, seconds: int, known: dict[str, list[str]], cwd: Path
) -> tuple[int, str]:
    """Exit code and output of one schemathesis run, stopped soon after `seconds`."""
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.security.st_hooks",
        "GDOS_FUZZ_KNOWN": json.dumps(known),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{master.url}/openapi.json",
        "-H",
        f"Authorization: Bearer {api.token}",
        "--phases",
        run.phases,
        "--max-time",
        str(seconds),
        "--request-timeout",
        "30",
        # One worker: with two threads, Hypothesis's lambda pretty-printer (ast.parse) now and
        # then hits CPython 3.11's "AST constructor recursion depth mismatch" (gh-106905), an
        # error inside schemathesis, not an answer of the master.
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        # Logging in with random credentials only exercises the (separately tested) throttle.
        "--exclude-path-regex",
        "auth/login",
        "--seed",
        str(run.seed),
        "--no-color",
    ]
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=seconds + START_SECONDS + GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            # A scenario under way does not stop at --max-time; Ctrl-C does, and schemathesis
            # still reports what it found.
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_schemathesis_finds_nothing(shared_master, shared_api, tmp_path):
    runs = seeds()
    print(f"fuzz seeds {runs}: replay one with GDOS_FUZZ_SEEDS=<seed>", flush=True)
    deadline = time.monotonic() + BUDGET_SECONDS
    todo = plan(runs)
    known: dict[int, dict[str, list[str]]] = {}
    failures = []
    while todo:
        run = todo[0]
        if run.seed not in known:
            known[run.seed] = known_ids(shared_master, shared_api, f"{len(known)}", tmp_path)
        share = run.share / sum(r.share for r in todo)
        seconds = max(3, int((deadline - time.monotonic()) * share) - START_SECONDS)
        code, out = schemathesis_run(
            shared_master, shared_api, run, seconds, known[run.seed], tmp_path
        )
        todo.pop(0)
        print(f"seed {run.seed} {run.phases} ({seconds} s): exit {code}", flush=True)
        print(summary(out), flush=True)
        if code != 0 and not (code in INTERRUPTED and "FAILURES" not in out):
            failures.append(f"seed {run.seed}, {run.phases} (replay: GDOS_FUZZ_SEEDS={run.seed}):")
            failures.append(report(out))
            print(failures[-1], flush=True)
    assert "Traceback" not in shared_master.tail(2000), "the master logged a traceback"
    assert not failures, "\n".join(failures)


def summary(out: str) -> str:
    """Schemathesis' summary: phases, failures by code, warnings, cases, time."""
    start = out.rfind("SUMMARY")
    return out[start:].strip() if start >= 0 else out[-2000:]


def report(out: str) -> str:
    """Schemathesis' failures (each with its `Reproduce with: curl ...`) and summary."""
    start = out.find("FAILURES")
    return out[start:][-20000:] if start >= 0 else out[-8000:]
