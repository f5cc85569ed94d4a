"""Agent sockets' node credentials checked in batches on real SQLite: every socket opening in one
turn of the event loop costs one query, a revoked or unknown credential finds no node, and a
burst larger than a query's worth is answered in full."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from master.db import models
from master.services import credentials as credentials_module
from master.services.security import secret_hash
from master.services.wiring import Services
from tests.master.inprocess import make_app, running, services_of


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Any]]:
    app = make_app(tmp_path_factory.mktemp("cred") / "m")
    with running(app) as (client, _):
        assert client.portal is not None
        yield services_of(app), client.portal.call


def nodes(svc: Services, count: int, revoked: bool = False) -> dict[str, str]:
    """`count` nodes; secret -> node id."""
    secrets = [f"gdn_{uuid.uuid4().hex}" for _ in range(count)]
    with svc.db.session() as s:
        made = [models.Node(secret_hash=secret_hash(x), revoked=revoked) for x in secrets]
        s.add_all(made)
        s.commit()
        return {x: n.id for x, n in zip(secrets, made, strict=True)}


class NodeSelects:
    def __init__(self, svc: Services) -> None:
        self.engine = svc.db.engine
        self.count = 0
        event.listen(self.engine, "before_cursor_execute", self._statement)

    def _statement(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "FROM nodes" in statement and "secret_hash IN" in statement:
            self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)


def test_sockets_opening_in_one_turn_are_checked_with_one_query(
    master: tuple[Services, Any],
) -> None:
    svc, call = master
    known = nodes(svc, 5)
    revoked = nodes(svc, 1, revoked=True)
    asked = [*known, *revoked, "gdn_nobody"]

    async def open_all() -> list[str | None]:
        return list(await asyncio.gather(*(svc.credentials.node_id(x) for x in asked)))

    selects = NodeSelects(svc)
    try:
        found = call(open_all)
    finally:
        selects.close()
    assert found == [*known.values(), None, None]
    assert selects.count == 1


def test_a_burst_larger_than_a_query_is_answered_in_full(
    master: tuple[Services, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, call = master
    monkeypatch.setattr(credentials_module, "MAX_LOOKUPS", 2)
    known = nodes(svc, 5)

    async def open_all() -> list[str | None]:
        return list(await asyncio.gather(*(svc.credentials.node_id(x) for x in known)))

    selects = NodeSelects(svc)
    try:
        found = call(open_all)
    finally:
        selects.close()
    assert found == list(known.values())
    assert selects.count == 3
