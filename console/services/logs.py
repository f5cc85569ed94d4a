"""One instance's log at a time: its tail, then followed live."""

from __future__ import annotations

import contextlib
from typing import Any

from PySide6.QtCore import QTimer, Signal

from console.client import ClientError
from console.message import action, async_slot, warning
from console.services.feature import FeatureService
from console.services.session import Session


class LogsService(FeatureService):
    """One log at a time: its tail, then followed live through `log:<instance>:<name>` events.

    What is shown is the file's bytes up to `end`; live chunks carry their offset in the file,
    so a chunk already shown is skipped, an overlapping one is trimmed, and a gap (missed
    while reconnecting) is filled from the tail. A slow check asks the master for the size
    alone (`tail_bytes=0`) and catches up if the stream said nothing.
    """

    files_listed = Signal(str, list)  # instance id, [{"name","path","size","exists","error"}]
    size_known = Signal(str, str, int)  # instance id, log name, its size now
    text_replaced = Signal(str)
    text_appended = Signal(str)

    def __init__(self, session: Session, check_ms: int = 5000) -> None:
        super().__init__(session)
        self.instance_id = ""
        self.name = ""
        self.tail_bytes = 256 * 1024
        self.following = False
        self.end = 0  # where what is shown ends, as an offset in the file
        self._chunk_seen = False
        self._timer = QTimer(self)
        self._timer.setInterval(check_ms)
        self._timer.timeout.connect(self._tick)
        session.on("log", self.on_log)
        session.resynced.connect(self._resynced)

    @property
    def key(self) -> str:
        return f"log:{self.instance_id}:{self.name}"

    @async_slot(str)
    @action("listing logs")
    async def list_files(self, instance_id: str) -> None:
        files = await self.guarded("logs", self.session.require().logs(instance_id))
        if files is not None:
            self.files_listed.emit(instance_id, [f.model_dump() for f in files])

    @async_slot(str, str, bool)
    @action("reading the log")
    async def open(self, instance_id: str, name: str, follow: bool = False) -> None:
        """Show the tail of a log; follow it live if asked (or if the last one was followed)."""
        follow = follow or self.following
        await self._unfollow()
        self.instance_id, self.name = instance_id, name
        await self._reload()
        if follow:
            await self.follow(True)

    async def _reload(self) -> None:
        tail = await self.guarded(
            "logs", self.session.require().log_tail(self.instance_id, self.name, self.tail_bytes)
        )
        if tail is not None:
            self.end = tail.end
            self.text_replaced.emit(tail.text)
            self.size_known.emit(self.instance_id, self.name, tail.size)

    @async_slot(bool)
    @action("following the log")
    async def follow(self, on: bool) -> None:
        if not on:
            await self._unfollow()
            return
        if not self.instance_id or self.following:
            return
        await self.session.subscribe([self.key])
        self.following = True
        self._timer.start()
        await self._check()  # what was written between the tail and the subscription

    async def _unfollow(self) -> None:
        self._timer.stop()
        if self.following and self.instance_id:
            self.following = False
            await self.session.unsubscribe([self.key])
        self.following = False

    def on_log(self, data: dict[str, Any]) -> None:
        if data.get("instance_id") != self.instance_id or data.get("name") != self.name:
            return
        if data.get("error"):  # the master stopped following it, and says why
            warning(f"following {self.name} stopped: {data['error']}")
            self._timer.stop()
            self.following = False
            return
        text = str(data.get("data") or "")
        start = int(data.get("offset") or 0)
        stop = start + len(text.encode())
        self._chunk_seen = True
        if data.get("reset"):  # rotated or truncated: what follows starts a new file
            self.end = stop
            self.text_replaced.emit(text)
        elif stop <= self.end:
            return  # shown already (the tail had it)
        elif start > self.end:
            self._catch_up()  # a gap: fill it from the tail, this chunk included
        else:
            self.text_appended.emit(text.encode()[self.end - start :].decode(errors="replace"))
            self.end = stop
            self.size_known.emit(self.instance_id, self.name, stop)

    def _resynced(self) -> None:
        if self.following:
            self._catch_up()

    @async_slot()
    @action("reading the log")
    async def _catch_up(self) -> None:
        await self._check(force=True)

    @async_slot()
    @action("reading the log")
    async def _tick(self) -> None:
        await self._check()
        client = self.session.client
        if self.instance_id and client is not None and client.token is not None:
            with contextlib.suppress(ClientError):  # the other logs' sizes: labels stay true
                files = await client.logs(self.instance_id)
                self.files_listed.emit(self.instance_id, [f.model_dump() for f in files])

    async def _check(self, force: bool = False) -> None:
        """Append what the stream did not bring (or reload after a rotation)."""
        client = self.session.client
        if not self.instance_id or client is None or client.token is None:
            return
        seen, self._chunk_seen = self._chunk_seen, False
        if seen and not force:
            return  # the stream is doing its job
        try:
            size = (await client.log_tail(self.instance_id, self.name, 0)).size
        except ClientError:
            return  # the node may be away; the next check tries again
        self.size_known.emit(self.instance_id, self.name, size)
        if size == self.end:
            return
        missing = size - self.end
        if missing < 0 or missing > self.tail_bytes:
            await self._reload()
            return
        tail = await client.log_tail(self.instance_id, self.name, missing)
        if tail.offset != self.end:  # it moved meanwhile: start over from its tail
            await self._reload()
            return
        self.end = tail.end
        if tail.text:
            self.text_appended.emit(tail.text)
