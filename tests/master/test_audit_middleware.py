"""The audit row of a write exists by the time its answer leaves the master."""

import pytest
from sqlalchemy import select

from master.api.middleware import AuditMiddleware
from master.db import models
from master.db.session import Database


def actions(db):
    with db.session() as s:
        return [(e.action, e.result) for e in s.scalars(select(models.AuditEntry))]


async def test_the_row_is_written_before_the_answer_goes_out(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    before = actions(db)

    async def app(scope, receive, send):
        scope["state"]["actor"] = "ops"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    seen_at_answer: list[list[tuple[str, str]]] = []

    async def send(message):
        if message["type"] == "http.response.start":
            seen_at_answer.append(actions(db))

    scope = {"type": "http", "method": "DELETE", "path": "/api/v1/backups/b1", "state": {}}
    await AuditMiddleware(app, db)(scope, None, send)
    assert seen_at_answer == [[*before, ("DELETE /api/v1/backups/b1", "ok")]]
    assert actions(db) == seen_at_answer[0]  # once, not again at the end


async def test_a_request_that_fails_before_answering_is_recorded_as_an_error(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    before = actions(db)

    async def app(scope, receive, send):
        raise RuntimeError("boom")

    scope = {"type": "http", "method": "POST", "path": "/api/v1/systems", "state": {}}
    with pytest.raises(RuntimeError):
        await AuditMiddleware(app, db)(scope, None, None)
    assert actions(db) == [*before, ("POST /api/v1/systems", "error_500")]
