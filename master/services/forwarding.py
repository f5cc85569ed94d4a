"""Live keyed topics of nodes another master holds, relayed from that master's event stream.

A console here subscribed to `metrics:<node or instance>` or `log:<instance>:<name>` of a node
that an online peer master holds gets that peer's events under the same keys: one upstream
WebSocket per peer (`Upstream`), shared by every console here, subscribed to exactly the keys
placed on it. Keys are placed by the database (the master each node's row names, if online)
when the wanted keys change, when a `node` event names a node of a forwarded key, and every
`RECHECK` seconds, so a key follows its node when it moves (to this master: the local path
takes over, the upstream unsubscribes). An upstream with nothing to carry closes after `IDLE`.

Peers authenticate with the cluster's secret (`peer_secret`); their subscriptions are never
forwarded again (`Hub.console_keys`), so two masters cannot relay in a loop. PostgreSQL only.
"""

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.lean_imports import load_httpx
from master.services import logs
from master.services.agents import AgentRegistry
from master.services.peer_secret import PeerSecret

log = logging.getLogger(__name__)

METRICS_PREFIX = "metrics:"
RECHECK = 2.0  # seconds between placements while keys are forwarded (the masters' heartbeat)
IDLE = 30.0  # seconds an upstream with no key stays open, for the next subscriber
OPEN_TIMEOUT = 5.0
PING_INTERVAL, PING_TIMEOUT = 2.0, 3.0  # a hung peer is left as agents leave it
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0
HISTORY_TIMEOUT = 5.0  # seconds for a peer to answer a metrics history request
MAX_FRAME = 16 << 20
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def subject(key: str) -> str | None:
    """The node or instance id a keyed topic is about; None for keys not forwarded."""
    if key.startswith(METRICS_PREFIX):
        return key[len(METRICS_PREFIX) :] or None
    parsed = logs.parse_key(key)
    return parsed[0] if parsed else None


def event_key(event: Any) -> str | None:
    """The key an upstream event was published under on the peer."""
    if not isinstance(event, dict) or not isinstance(data := event.get("data"), dict):
        return None
    topic = event.get("topic")
    if topic == "metrics" and isinstance(ident := data.get("id"), str):
        return METRICS_PREFIX + ident
    if topic == "log":
        instance, name = data.get("instance_id"), data.get("name")
        if isinstance(instance, str) and isinstance(name, str):
            return logs.log_key(instance, name)
    return None


def place(
    keys: Iterable[str], holders: Mapping[str, tuple[str, str | None]], peers: Mapping[str, str]
) -> dict[str, set[str]]:
    """Peer master id -> the keys to subscribe to there. `holders` maps a node or instance id to
    (its node, the master holding that node or None); `peers` the online peers to their URLs.
    Keys of nodes held here, offline or unknown stay local (the local path serves them)."""
    placed: dict[str, set[str]] = {}
    for key in keys:
        holder = holders.get(subject(key) or "", ("", None))[1]
        if holder is not None and holder in peers:
            placed.setdefault(holder, set()).add(key)
    return placed


def ws_url(base: str) -> str:
    scheme, sep, rest = base.rstrip("/").partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{scheme}{sep}{rest}/api/v1/events"


class Upstream:
    """One peer's event stream, subscribed to the keys `want` was last given; relays their
    events into this master's hub. Reconnects with backoff while it has keys; ends after
    `IDLE` seconds without any (`done`)."""

    def __init__(self, peer_id: str, url: str, hub: Hub, headers: dict[str, str]) -> None:
        self.peer_id = peer_id
        self.url = url
        self.hub = hub
        self.headers = headers
        self.keys: frozenset[str] = frozenset()
        self.relayed = 0
        self.connected = False
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def done(self) -> bool:
        return self._task.done()

    def want(self, keys: Iterable[str]) -> None:
        keys = frozenset(keys)
        if keys != self.keys:
            self.keys = keys
            self._changed.set()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while await self._wait_for_keys():
            try:
                async with connect(
                    ws_url(self.url),
                    additional_headers=self.headers,
                    open_timeout=OPEN_TIMEOUT,
                    ping_interval=PING_INTERVAL,
                    ping_timeout=PING_TIMEOUT,
                    max_size=MAX_FRAME,
                    compression=None,
                ) as ws:
                    self.connected = True
                    backoff = BACKOFF_FIRST
                    log.info("forwarding live data from master %s (%s)", self.peer_id, self.url)
                    if await self._session(ws):
                        return  # idle
            except InvalidStatus as exc:
                log.error(
                    "master %s refused this master's event stream (HTTP %s): is its peer "
                    "secret this database's?",
                    self.peer_id,
                    exc.response.status_code,
                )
                backoff = BACKOFF_MAX
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.warning("event stream of master %s (%s): %s", self.peer_id, self.url, exc)
            finally:
                self.connected = False
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _wait_for_keys(self) -> bool:
        """False once no key was wanted for `IDLE` seconds."""
        with contextlib.suppress(TimeoutError):
            while not self.keys:
                self._changed.clear()
                await asyncio.wait_for(self._changed.wait(), IDLE)
        return bool(self.keys)

    async def _session(self, ws: ClientConnection) -> bool:
        """Keep the peer subscribed to `keys` while events are relayed; True when it ends
        because no key was wanted for `IDLE` seconds, an exception when the link failed."""
        await ws.send(json.dumps({"batch": True}))
        reader = asyncio.create_task(self._read(ws))
        sent: frozenset[str] = frozenset()
        try:
            while not reader.done():
                keys = self.keys
                if keys != sent:
                    change = {"subscribe": sorted(keys - sent), "unsubscribe": sorted(sent - keys)}
                    await ws.send(json.dumps(change))
                    sent = keys
                self._changed.clear()
                if self.keys != keys:
                    continue
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait(
                    {reader, changed},
                    timeout=None if keys else IDLE,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                idle = not changed.done() and not reader.done()
                changed.cancel()
                if idle:
                    return True
            reader.result()  # the peer closed the stream: raises why, if it was an error
            return False
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            try:
                events = _decode(frame)
            except msgspec.DecodeError:
                continue
            for event in events if isinstance(events, list) else (events,):
                key = event_key(event)
                if key is not None and key in self.keys:
                    self.relayed += 1
                    self.hub.offer_keyed(key, _encode(event).decode())


class Forwarder:
    """Places the keys this master's consoles want on the peers holding their nodes."""

    def __init__(self, db: Database, hub: Hub, agents: AgentRegistry, secret: PeerSecret) -> None:
        self.db = db
        self.hub = hub
        self.agents = agents
        self.secret = secret
        self.upstreams: dict[str, Upstream] = {}
        self._nodes: set[str] = set()  # nodes of the wanted keys: their moves recheck
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        hub.key_listeners.append(self.recheck)
        hub.listen("node", self._on_node)

    def recheck(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to forward yet
                self._task = asyncio.get_running_loop().create_task(self._drain())

    def _on_node(self, data: dict[str, Any]) -> None:
        # Full node events (not the periodic load ones) say where a node is now.
        if "master_id" in data and data.get("id") in self._nodes:
            self.recheck()

    async def run(self) -> None:
        """Placement again every `RECHECK` seconds while anything is wanted or forwarded."""
        while True:
            await asyncio.sleep(RECHECK)
            if self.upstreams or self.hub.console_keys():
                self.recheck()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for upstream in list(self.upstreams.values()):
            await upstream.close()
        self.upstreams.clear()

    async def _drain(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._sync()
            except Exception as exc:  # the database away: placed again at the next recheck
                log.warning("placing forwarded keys failed: %s", exc)

    async def _sync(self) -> None:
        wanted = {key for key in self.hub.console_keys() if subject(key)}
        placed: dict[str, set[str]] = {}
        urls: dict[str, str] = {}
        if wanted and self.agents.peers - {self.agents.master_id}:  # no peer: all is local
            holders, urls = self._lookup({s for key in wanted if (s := subject(key))})
            placed = place(wanted, holders, urls)
            self._nodes = {node for node, _ in holders.values()}
        else:
            self._nodes = set()
        for peer_id, upstream in list(self.upstreams.items()):
            url = urls.get(peer_id, upstream.url)
            if upstream.done or url != upstream.url:
                del self.upstreams[peer_id]
                await upstream.close()
            else:
                upstream.want(placed.get(peer_id, ()))
        for peer_id, keys in placed.items():
            if peer_id not in self.upstreams:
                headers = self.secret.headers(self.agents.master_id or "")
                self.upstreams[peer_id] = Upstream(peer_id, urls[peer_id], self.hub, headers)
                self.upstreams[peer_id].want(keys)

    async def history(self, ident: str, path: str, seconds: float) -> dict[str, Any] | None:
        """The metrics history of a node or instance (`path`, its `/metrics` route) from the
        online peer holding its node; None when no peer holds it or the peer did not answer."""
        holders, urls = self._lookup({ident}) if self.agents.peers else ({}, {})
        peer = holders.get(ident, ("", None))[1]
        if peer is None or peer not in urls:
            return None
        headers = self.secret.headers(self.agents.master_id or "")
        load_httpx()  # at the first history asked of a peer, without httpx's command line
        import httpx

        try:
            async with httpx.AsyncClient(timeout=HISTORY_TIMEOUT) as client:
                answer = await client.get(
                    urls[peer].rstrip("/") + path, params={"seconds": seconds}, headers=headers
                )
                answer.raise_for_status()
                found = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("metrics history of %s from master %s: %s", ident, peer, exc)
            return None
        return found if isinstance(found, dict) else None

    def _lookup(self, ids: set[str]) -> tuple[dict[str, tuple[str, str | None]], dict[str, str]]:
        """(node or instance id -> (its node, the master holding it or None), peer -> URL)."""
        nodes, instances, masters = models.Node, models.Instance, models.Master
        peers = self.agents.peers - {self.agents.master_id}
        with self.db.session() as s:
            rows = [
                *s.execute(select(nodes.id, nodes.id, nodes.master_id).where(nodes.id.in_(ids))),
                *s.execute(
                    select(instances.id, nodes.id, nodes.master_id)
                    .join(nodes, nodes.id == instances.node_id)
                    .where(instances.id.in_(ids))
                ),
            ]
            found = s.execute(select(masters.id, masters.url).where(masters.id.in_(peers)))
            urls: dict[str, str] = {peer: url for peer, url in found}
        holders = {ident: (node, self.agents.holder(node, master)) for ident, node, master in rows}
        return holders, {peer: url for peer, url in urls.items() if url}
