"""Processes start from an argument list, never a shell string: metacharacters in service.json
arrive as literal bytes and run nothing."""

import json

import pytest

from tests.support import build_package, wait_for

pytestmark = pytest.mark.slow

HOSTILE = [
    "; touch PWNED1",
    "$(touch PWNED2)",
    "`touch PWNED3`",
    "| touch PWNED4",
    "&& touch PWNED5",
    "' \" \\ *",
    "\n\ttouch PWNED6",
]

RECORDER = """\
import json, os, sys, time
with open(os.path.join(os.environ["OUT_DIR"], "argv.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": os.environ.get("EVIL")}, f)
time.sleep(60)
"""


def test_metacharacters_are_just_bytes(master, api, agent_factory, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    agent = agent_factory(master)
    node = agent.start_and_wait(api)
    pkg = build_package(
        tmp_path / "p",
        name="argv",
        script=RECORDER,
        manifest={"args": HOSTILE, "env": {"OUT_DIR": str(out), "EVIL": "$(touch PWNED7); `id`"}},
    )
    api.upload(pkg)
    system = api.post("/systems", {"name": "shell"})
    module = api.post(f"/systems/{system['id']}/modules", {"name": "rec", "package": "argv"})
    iid = api.post("/instances", {"module_id": module["id"], "node_id": node}, expect=202)["id"]
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="deploy")
    api.post(f"/instances/{iid}/start", expect=202)
    wait_for(lambda: (out / "argv.json").exists(), what="the service wrote its argv")
    seen = json.loads((out / "argv.json").read_text())
    assert seen["argv"] == HOSTILE
    assert seen["env"] == "$(touch PWNED7); `id`"
    inst_dir = agent.work_dir / iid
    leftovers = [p for root in (tmp_path, inst_dir, agent.work_dir) for p in root.rglob("PWNED*")]
    assert leftovers == [], leftovers
    api.post(f"/instances/{iid}/stop", expect=202)
    wait_for(lambda: api.get(f"/instances/{iid}")["state"] == "stopped", what="stopped")
