"""Node credentials of opening agent sockets, checked in batches: every socket that opens in one
turn of the event loop is looked up with one query (after a master restart the whole fleet
dials in at once)."""

import asyncio
import logging
from typing import cast

from sqlalchemy import Table, bindparam, select

from master.db import models
from master.db.session import Database
from master.services.security import secret_hash

log = logging.getLogger(__name__)

NODES = cast(Table, models.Node.__table__)
MAX_LOOKUPS = 500  # credentials per query: a larger burst goes on in the next turn
_BY_HASHES = select(NODES.c.id, NODES.c.secret_hash).where(
    NODES.c.secret_hash.in_(bindparam("hashes", expanding=True)), ~NODES.c.revoked
)


class CredentialLookup:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queued: list[tuple[str, asyncio.Future[str | None]]] = []
        self._scheduled = False

    def node_id(self, secret: str) -> "asyncio.Future[str | None]":
        """The id of the (not revoked) node this secret belongs to, else None; answered at the
        end of this turn of the event loop."""
        loop = asyncio.get_running_loop()
        found: asyncio.Future[str | None] = loop.create_future()
        self._queued.append((secret_hash(secret), found))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return found

    def _flush(self) -> None:
        batch, self._queued = self._queued[:MAX_LOOKUPS], self._queued[MAX_LOOKUPS:]
        self._scheduled = bool(self._queued)
        if self._scheduled:
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            with self.db.engine.connect() as conn:
                rows = conn.execute(_BY_HASHES, {"hashes": sorted({h for h, _ in batch})})
                ids = {str(row[1]): str(row[0]) for row in rows}
        except Exception as exc:  # a callback of the loop: each waiting socket gets the error
            log.exception("could not check %d node credentials", len(batch))
            for _, found in batch:
                if not found.done():
                    found.set_exception(exc)
            return
        for digest, found in batch:
            if not found.done():  # a socket closed meanwhile is gone
                found.set_result(ids.get(digest))
