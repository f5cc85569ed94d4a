"""The master's services on a real database (a SQLite file, or PostgreSQL), with agents faked
at the channel seam: each fake records the commands sent down its socket and answers them as
the test says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from master.config import Settings
from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.agents import AgentLink, AgentRegistry
from master.services.orchestrator import Orchestrator
from protocol.messages import Result, WireError

Answer = Callable[[dict[str, Any]], Result | None]  # None: the agent never answers


def ok(msg: dict[str, Any]) -> Result:
    return Result(reply_to=msg["id"], ok=True)


class FakeAgent:
    def __init__(self, agents: AgentRegistry, node_id: str, answer: Answer = ok) -> None:
        self.answer = answer
        self.sent: list[dict[str, Any]] = []
        self.link = AgentLink(node_id, self)
        agents.attach(self.link)

    async def send_text(self, data: str) -> None:
        msg = json.loads(data)
        self.sent.append(msg)
        reply = self.answer(msg)
        if reply is not None:
            asyncio.get_running_loop().call_soon(self.link.resolve, reply)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


def refuse(message: str, state: str | None = None) -> Answer:
    def answer(msg: dict[str, Any]) -> Result:
        data = {"state": state} if state else {}
        error = WireError(code="failed", message=message)
        return Result(reply_to=msg["id"], ok=False, error=error, data=data)

    return answer


class World:
    """A database, a hub that keeps what it publishes, and an orchestrator over them."""

    def __init__(self, tmp_path: Path, db_url: str | None = None) -> None:
        self.db = Database(db_url or f"sqlite:///{tmp_path / 'master.db'}")
        self.db.migrate()
        self.hub = Hub()
        self.events: list[dict[str, Any]] = []
        self.hub.listen("instance", self.events.append)
        self.agents = AgentRegistry()
        self.orch = Orchestrator(self.db, self.agents, self.hub, Settings(data_dir=tmp_path))
        with self.db.session() as s:
            node, system = models.Node(secret_hash="n1", hostname="old"), models.System(name="s")
            s.add_all([node, system])
            s.commit()
            self.node_id, self.system_id = node.id, system.id

    def add_instance(self, name: str, state: str, desired: str = "stopped", **kw: Any) -> str:
        with self.db.session() as s:
            inst = models.Instance(
                system_id=self.system_id,
                node_id=self.node_id,
                name=name,
                state=state,
                desired_state=desired,
                **kw,
            )
            s.add(inst)
            s.commit()
            return inst.id

    def instance(self, instance_id: str) -> models.Instance | None:
        with self.db.session() as s:
            inst = s.get(models.Instance, instance_id)
            if inst is not None:
                s.expunge(inst)
            return inst

    async def act(
        self, instance_id: str, verb: Callable[..., Awaitable[models.Instance]], **kw: Any
    ) -> None:
        """Call an orchestrator verb the way a route does, with the instance in a session."""
        with self.db.session() as s:
            inst = s.get(models.Instance, instance_id)
            assert inst is not None
            await verb(s, inst, **kw)


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Let background commands run until `check` holds (a generous bound, not a timing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
