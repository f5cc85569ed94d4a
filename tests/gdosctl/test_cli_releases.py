"""gdosctl's release commands and apply's rollouts (API.md "Releases")."""

from __future__ import annotations

import uuid

import pytest
import yaml

pytestmark = pytest.mark.slow


def release_file(system: str, pkg: str, host: str, version: str | None, own_env: str = "") -> str:
    pinned = f'    version: "{version}"\n' if version else ""
    first = f"      - node: {host}\n" + (
        f"        env: {{GREETING: {own_env}}}\n" if own_env else ""
    )
    return (
        f"system: {system}\nmodules:\n  - name: web\n    package: {pkg}\n{pinned}"
        f"    start_order: 1\n    instances:\n{first}      - node: {host}\n"
    )


def versions(ctl, system: str) -> list[str]:
    return sorted(r["version"] for r in ctl("ps", "--system", system, "-o", "json").json())


def test_apply_rolls_out_upgrade_rollback_and_instance_settings(world, tmp_path):
    ctl, host = world.ctl, world.hostname
    system, pkg = f"rel{uuid.uuid4().hex[:6]}", f"relp{uuid.uuid4().hex[:6]}"
    ctl("push", str(world.package(pkg, "1.0.0")))
    ctl("push", str(world.package(pkg, "1.0.1")))
    path = tmp_path / "rel.yaml"
    path.write_text(release_file(system, pkg, host, "1.0.0"))
    ctl("apply", "-f", str(path), "--start")
    assert versions(ctl, system) == ["1.0.0", "1.0.0"]

    # A new version in the file: rolled out, batch 1; then nothing to do.
    path.write_text(release_file(system, pkg, host, "1.0.1"))
    plan = ctl("apply", "-f", str(path), "-o", "json").json()
    assert len(plan["rolled_out"]) == 1 and "1.0.0 -> 1.0.1" in plan["rolled_out"][0]
    assert versions(ctl, system) == ["1.0.1", "1.0.1"]
    assert ctl("apply", "-f", str(path), "-o", "json").json()["rolled_out"] == []

    # --no-rollout changes the module only; the instances drift until a rollout.
    path.write_text(release_file(system, pkg, host, "1.0.0"))
    held = ctl("apply", "-f", str(path), "--no-rollout", "-o", "json").json()
    assert held["rolled_out"] == [] and "not rolled out" in held["changed"][0]
    assert versions(ctl, system) == ["1.0.1", "1.0.1"]
    assert ctl("apply", "-f", str(path), "-o", "json").json()["rolled_out"]
    assert versions(ctl, system) == ["1.0.0", "1.0.0"]

    # Per-instance settings in the file; export -> apply changes nothing.
    path.write_text(release_file(system, pkg, host, "1.0.0", own_env="hi"))
    assert len(ctl("apply", "-f", str(path), "-o", "json").json()["changed"]) == 1
    exported = ctl("export", system).out
    assert yaml.safe_load(exported)["modules"][0]["instances"][0]["env"] == {"GREETING": "hi"}
    same = ctl("apply", "-f", "-", "-o", "json", input=exported).json()
    assert (same["created"], same["changed"], same["rolled_out"], same["removed"]) == (
        [],
        [],
        [],
        [],
    )

    # One instance up and down; the module back and forth.
    ctl("upgrade", f"{system}/web-1", "--version", "1.0.1")
    assert ctl("instance", "show", f"{system}/web-1", "-o", "json").json()["version"] == "1.0.1"
    ctl("rollout", f"{system}/web", "--version", "1.0.1")
    assert versions(ctl, system) == ["1.0.1", "1.0.1"]
    ctl("rollback", f"{system}/web")
    assert versions(ctl, system) == ["1.0.0", "1.0.0"]
    ctl("instance", "set", f"{system}/web-2", "--env", "EXTRA=1")
    shown = ctl("instance", "show", f"{system}/web-2", "-o", "json").json()
    assert shown["settings"]["env"] == {"EXTRA": "1"}

    path.write_text(f"system: {system}\nmodules: []\n")
    ctl("apply", "-f", str(path))
    ctl("system", "rm", system, "--yes")
