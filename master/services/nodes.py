"""A node's life as consoles see it: its changes published, its load throttled, going offline,
and the node listing."""

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

import msgspec
from sqlalchemy import Connection, Row, Table, Text, bindparam, select, type_coerce

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services import ownership
from master.services.agents import AgentLink, AgentRegistry
from master.services.orchestrator import Orchestrator
from master.services.serializers import NODE_COLUMNS, node_view
from protocol.messages import CLOSE_POLICY

log = logging.getLogger(__name__)
NODE_LOAD_EVERY = (
    5.0  # seconds between broadcast `node` load events per node (charts: metrics:<id>)
)
TABLE = cast(Table, models.Node.__table__)
# Labels as their stored JSON text: msgspec decodes it several times faster than the JSON type.
_COLUMNS = [
    type_coerce(TABLE.c.labels, Text).label(n) if n == "labels" else TABLE.c[n]
    for n in NODE_COLUMNS
]
# One statement object each: SQLAlchemy then reuses its compiled form as is.
_LISTING = select(*_COLUMNS).where(~TABLE.c.revoked).order_by(TABLE.c.hostname)
_BY_IDS = select(*_COLUMNS).where(
    TABLE.c.id.in_(bindparam("ids", expanding=True)), ~TABLE.c.revoked
)
_encode = msgspec.json.Encoder().encode
LISTING_MAX_AGE = 1.0  # seconds a built listing serves pollers: its live load and last_seen
# Past this age a listing still serves pollers while its successor is built in a worker thread:
# a poller then never waits for a build that only its age asked for.
LISTING_REFRESH_AFTER = 0.75
# A listing past its age limit is still answered while that build runs (a busy loop or a loaded
# machine can make it take longer than the quarter second left), but never one older than this.
LISTING_STALE_MAX = 5.0


def _columns(row: Row[Any]) -> dict[str, Any]:
    node = dict(zip(NODE_COLUMNS, row, strict=True))
    if isinstance(node["labels"], str):  # SQLite; PostgreSQL's driver decodes JSON itself
        node["labels"] = msgspec.json.decode(node["labels"])
    return node


class Listing:
    """An encoded node listing, its entity tag and when it was built."""

    __slots__ = ("body", "built", "etag", "key")

    def __init__(self, body: bytes, key: tuple[int, frozenset[str]], built: float) -> None:
        self.body = body
        self.key = key  # what it was built from: a newer generation or peer set outdates it
        self.built = built
        self.etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _refreshed(done: "asyncio.Future[Listing]") -> None:
    """A build ahead that failed: logged; the next poller past the age limit builds again."""
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.warning("could not build the node listing ahead of time: %s", exc)


class Nodes:
    def __init__(
        self, db: Database, hub: Hub, agents: AgentRegistry, orchestrator: Orchestrator
    ) -> None:
        self.db = db
        self.hub = hub
        self.agents = agents
        self.orchestrator = orchestrator
        self._load_published: dict[str, float] = {}
        self._to_publish: dict[str, bool] = {}  # node ids to publish this turn: planned?
        self._generation = 0  # bumped by every change this master makes to a node
        self._listing: Listing | None = None
        self._building = threading.Lock()  # one build at a time; the others wait and share it
        self._refresh: asyncio.Future[Listing] | None = None  # the build ahead of expiry

    def changed(self) -> None:
        """A node's row or connection changed: the next listing is built afresh."""
        self._generation += 1

    def listing(self) -> "Listing":
        """`GET /nodes`: built at most once per `LISTING_MAX_AGE` seconds and again after any
        change this master makes to a node, so pollers share one build (called in a thread)."""
        found = self.cached()
        if found is not None:
            return found
        with self._building:
            found = self.cached()
            if found is None:
                key = self._key()
                found = Listing(self.listing_json(), key, time.monotonic())
                self._listing = found
            return found

    def refresh_ahead(self) -> None:
        """A current listing near its age limit: build the next one in a worker thread now
        (one at a time), so the pollers that come after find it built."""
        found, running = self._listing, self._refresh
        if found is None or time.monotonic() - found.built < LISTING_REFRESH_AFTER:
            return
        if running is None or running.done():
            self._refresh = asyncio.get_running_loop().run_in_executor(None, self._rebuild, found)
            self._refresh.add_done_callback(_refreshed)

    def _rebuild(self, old: "Listing") -> "Listing":
        with self._building:
            found = self._listing
            if found is not None and found is not old:
                return found  # built meanwhile (a change, or a poller past the age limit)
            key = self._key()
            found = self._listing = Listing(self.listing_json(), key, time.monotonic())
            return found

    def _key(self) -> tuple[int, frozenset[str]]:
        return self._generation, self.agents.peers  # peers: the other masters' nodes' status

    def cached(self) -> "Listing | None":
        """The built listing while it is current, else None (then `listing` builds one)."""
        found = self._listing
        if (
            found is None
            or found.key != self._key()
            or time.monotonic() - found.built >= LISTING_MAX_AGE
        ):
            return None
        return found

    def current(self) -> "Listing | None":
        """What a poller is answered without waiting for a build: the listing while it is
        current, and, past its age limit only, while the successor `refresh_ahead` began is
        still being built (up to `LISTING_STALE_MAX`). None: the caller builds (`listing`)."""
        found = self.cached()
        if found is not None:
            return found
        found, running = self._listing, self._refresh
        if (
            found is None
            or running is None
            or running.done()
            or found.key != self._key()  # a change waits for its build
            or time.monotonic() - found.built >= LISTING_STALE_MAX
        ):
            return None
        return found

    def listing_json(self) -> bytes:
        """`GET /nodes` as JSON: one Core query and plain data."""
        with self.db.engine.connect() as conn:
            nodes = [node_view(_columns(row), self.agents) for row in conn.execute(_LISTING)]
        return _encode(nodes)

    def publish(self, node_id: str, planned: bool = False) -> None:
        """Tell subscribers how the node is now, at the end of this turn of the event loop,
        with the other nodes that changed in it (one query for a whole reconnect burst).
        `planned`: the node went offline on purpose (its agent said goodbye, or this master is
        stopping), which the alert engine does not count as a node lost."""
        self.changed()
        first = not self._to_publish
        self._to_publish[node_id] = self._to_publish.get(node_id, False) or planned
        if first:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a synchronous caller): at once
                self.flush()

    def flush(self) -> None:
        planned, self._to_publish = self._to_publish, {}
        if planned:
            for data in self._read(planned):
                if planned.get(data["id"]):
                    data["planned"] = True
                self.hub.publish("node", data)

    def _read(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            result = conn.execute(_BY_IDS, {"ids": list(ids)})
            return [node_view(_columns(row), self.agents) for row in result]

    def publish_load(self, link: AgentLink) -> None:
        now = time.monotonic()
        if now - self._load_published.get(link.node_id, 0.0) < NODE_LOAD_EVERY:
            return  # a table refresh every few seconds; charts subscribe to metrics:<node id>
        self._load_published[link.node_id] = now
        self.hub.publish(
            "node", {"id": link.node_id, "status": "online", "load": link.load.to_dict()}
        )

    def offline(self, link: AgentLink, planned: bool = False) -> bool:
        """The node's socket is gone: remember when it was last seen, its processes are unknown.
        Only while the node is still this master's (its epoch): False, and nothing written,
        when it said hello to another master since."""
        me = self.agents.master_id

        def release(conn: Connection) -> bool:
            return ownership.release(conn, link.node_id, link.epoch, me, link.last_seen_wall)

        if not self.orchestrator.mark_node_unknown(link.node_id, release):
            log.info("node %s is held by another master: not marked offline", link.node_id)
            return False
        self.publish(link.node_id, planned)
        return True

    async def drop_stale(self, link: AgentLink) -> None:
        """An agent silent past the grace: offline, and its socket closed."""
        if self.agents.detach(link):
            self.offline(link)
        with contextlib.suppress(Exception):
            await link.channel.close(CLOSE_POLICY, "heartbeat timeout")
