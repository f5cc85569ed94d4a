"""One master and one agent for the gdosctl tests of a module, and a logged-in home."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gdosctl.ctl import Ctl
from tests.support import ADMIN_PASSWORD, Agent, Api, Master, build_package, kill_services_under


@dataclass
class World:
    master: Master
    api: Api
    agent: Agent
    node_id: str
    hostname: str
    ctl: Ctl
    root: Path

    def package(self, name: str, version: str = "1.0.0", **manifest) -> Path:
        return build_package(
            self.root / "pkgs", name, version, manifest={"args": ["--port", "0"], **manifest}
        )


@pytest.fixture(scope="module")
def world(shared_master, shared_api, tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("gdosctl")
    agent = Agent(shared_master, root / "agent")
    node_id = agent.start_and_wait(shared_api)
    hostname = shared_api.get(f"/nodes/{node_id}")["hostname"]
    ctl = Ctl(root / "home")
    ctl("login", shared_master.url, "-u", "admin", "--password-stdin", input=ADMIN_PASSWORD + "\n")
    yield World(shared_master, shared_api, agent, node_id, hostname, ctl, root)
    agent.stop()
    kill_services_under(root)
