"""Service logs through the master: list and tail by asking the node's agent, follow live.

The agent is the authority on what is readable (only declared logs, resolved safely on every
read); the master checks names against the package manifest first, so a wrong name is a quick
404 without a round trip. Following: while anybody on the event stream is subscribed to
`log:<instance>:<name>`, the agent holding that instance streams `log_chunk`s, which are
published to those subscribers only; when the last one leaves, the agent is told to stop.
"""

import asyncio
import base64
import contextlib
import logging
from typing import Any

from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services.agents import AgentLink, AgentRegistry
from protocol.errors import ErrorCode, GdosError
from protocol.messages import FollowLog, ListLogs, LogChunk, Result, TailLog
from protocol.rest_records import LogFileOut

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
MAX_TAIL = 1 << 20
KEY_PREFIX = "log:"


def log_key(instance_id: str, name: str) -> str:
    return f"{KEY_PREFIX}{instance_id}:{name}"


def parse_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(KEY_PREFIX):
        return None
    instance_id, sep, name = key[len(KEY_PREFIX) :].partition(":")
    return (instance_id, name) if sep and instance_id and name else None


def declared_names(s: Any, inst: models.Instance) -> list[str] | None:
    """stdout, stderr and the manifest's log_paths; None when the manifest is not known here."""
    pkg = s.get(models.Package, inst.package_id) if inst.package_id else None
    if pkg is None:
        return None
    return ["stdout", "stderr", *((pkg.manifest or {}).get("log_paths") or {})]


def _raise_for(result: Result, what: str) -> None:
    if result.ok:
        return
    err = result.error
    if err is None:
        raise GdosError(ErrorCode.INTERNAL, f"the agent could not {what}")
    try:
        code = ErrorCode(err.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    raise GdosError(code, err.message, err.details)


class LogRelay:
    def __init__(self, db: Database, agents: AgentRegistry, hub: Hub) -> None:
        self.db = db
        self.agents = agents
        self.hub = hub
        self.following: dict[tuple[str, str], str] = {}  # (instance, name) -> node id
        self.refused: set[tuple[str, str]] = set()  # follows the agent refused; not retried
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        hub.key_listeners.append(self.keys_changed)

    # -- one-shot reads -----------------------------------------------------------------------

    def _check_name(self, s: Any, inst: models.Instance, name: str) -> None:
        names = declared_names(s, inst)
        if names is not None and name not in names:
            raise GdosError(
                ErrorCode.NOT_FOUND,
                f"instance {inst.name} has no log named {name!r}; it has "
                + ", ".join(repr(n) for n in names),
                {"name": name, "declared": names},
            )

    async def list_logs(self, inst: models.Instance) -> list[LogFileOut]:
        link = self.agents.require(inst.node_id)
        msg = ListLogs(id=link.next_id(), instance_id=inst.id)
        result = await link.request(msg, REQUEST_TIMEOUT)
        _raise_for(result, "list the logs")
        return [LogFileOut.model_validate(x) for x in result.data.get("logs", [])]

    async def tail(
        self, s: Any, inst: models.Instance, name: str, tail_bytes: int
    ) -> tuple[bytes, int, int]:
        """(bytes, file size, offset of the first byte)."""
        self._check_name(s, inst, name)
        link = self.agents.require(inst.node_id)
        msg = TailLog(
            id=link.next_id(), instance_id=inst.id, name=name, tail_bytes=min(tail_bytes, MAX_TAIL)
        )
        result = await link.request(msg, REQUEST_TIMEOUT)
        _raise_for(result, "read the log")
        data = base64.b64decode(result.data.get("data", ""))
        return data, int(result.data.get("size", len(data))), int(result.data.get("offset", 0))

    # -- following ----------------------------------------------------------------------------

    def on_chunk(self, node_id: str, chunk: LogChunk) -> None:
        key = (chunk.instance_id, chunk.name)
        if self.following.get(key) != node_id:
            return  # not asked for (any more), or not this node's instance
        data = chunk.to_dict()
        del data["type"]
        if not chunk.error:
            del data["error"]
        self.hub.publish("log", data, key=log_key(*key))

    def keys_changed(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to follow yet
                self._task = asyncio.get_running_loop().create_task(self._run())

    def node_connected(self, node_id: str) -> None:
        """A (re)connected agent follows nothing: ask again for what is still wanted."""
        for key, node in list(self.following.items()):
            if node == node_id:
                del self.following[key]
        self.refused.clear()
        self.keys_changed()

    def reset(self) -> None:
        """After a restore: every agent reconnects and follows nothing."""
        self.following.clear()
        self.refused.clear()
        self.keys_changed()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._sync()
            except Exception:
                log.exception("log follow bookkeeping failed")

    async def _sync(self) -> None:
        wanted = {k for key in self.hub.subscribed_keys() if (k := parse_key(key))}
        self.refused &= wanted
        for key in list(self.following):
            if key not in wanted:
                old = self.agents.get(self.following.pop(key))
                if old is not None:
                    await self._send_follow(old, key, follow=False)
        for key in wanted - set(self.following) - self.refused:
            with self.db.session() as s:
                inst = s.get(models.Instance, key[0])
                node_id = inst.node_id if inst else ""
                names = declared_names(s, inst) if inst else []
            if not node_id or (names is not None and key[1] not in names):
                self._refuse(key, "no such instance or log")
                continue
            link = self.agents.get(node_id)
            if link is None:
                continue  # offline: asked again when it connects
            error = await self._send_follow(link, key, follow=True)
            if error is None:
                self.following[key] = node_id
            else:
                self._refuse(key, error)

    def _refuse(self, key: tuple[str, str], error: str) -> None:
        self.refused.add(key)
        data = {"instance_id": key[0], "name": key[1], "error": error}
        self.hub.publish("log", data, key=log_key(*key))

    async def _send_follow(self, link: AgentLink, key: tuple[str, str], follow: bool) -> str | None:
        msg = FollowLog(id=link.next_id(), instance_id=key[0], name=key[1], follow=follow)
        try:
            result = await link.request(msg, REQUEST_TIMEOUT)
        except GdosError as exc:
            return exc.message
        if not result.ok:
            return result.error.message if result.error else "refused by the agent"
        return None
