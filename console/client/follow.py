"""`LogFollower`: one service log followed without Qt (`gdosctl logs -f`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from console.client.errors import ClientError
from console.client.events import EventStream
from console.client.rest import Client


class LogFollower:
    """One log followed without Qt (`gdosctl logs -f`): its tail, then what is appended, from
    `log:<instance>:<name>` events. Chunks carry their offset in the file, so one already shown
    is skipped, an overlapping one trimmed, a gap (missed while reconnecting) filled from the
    tail; when the stream says nothing for `check_every` seconds the size is checked too.

        async for text in LogFollower(client, instance_id, "stdout").follow():
            print(text, end="")
    """

    def __init__(
        self,
        client: Client,
        instance_id: str,
        name: str,
        tail_bytes: int = 65536,
        check_every: float = 5.0,
    ) -> None:
        self.client = client
        self.instance_id = instance_id
        self.name = name
        self.tail_bytes = tail_bytes
        self.check_every = check_every
        self.end = 0  # where what was given out ends, as an offset in the file

    async def follow(self) -> AsyncIterator[str]:
        chunks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        connected = asyncio.Event()

        def on_event(topic: str, data: dict[str, Any]) -> None:
            if (
                topic == "log"
                and data.get("instance_id") == self.instance_id
                and data.get("name") == self.name
            ):
                chunks.put_nowait(data)

        stream = EventStream(self.client, on_event, lambda up, _: connected.set() if up else None)
        stream.keys.add(f"log:{self.instance_id}:{self.name}")  # sent at every (re)connect
        runner = asyncio.create_task(stream.run())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connected.wait(), 10)  # else the size checks carry it
            tail = await self.client.log_tail(self.instance_id, self.name, self.tail_bytes)
            self.end = tail.end
            if tail.text:
                yield tail.text
            while True:
                try:
                    data = await asyncio.wait_for(chunks.get(), self.check_every)
                except TimeoutError:
                    text = await self._catch_up()
                else:
                    text = await self._chunk(data)
                if text:
                    yield text
        finally:
            stream.stop()
            await asyncio.gather(runner, return_exceptions=True)

    async def _chunk(self, data: dict[str, Any]) -> str:
        if data.get("error"):
            raise ClientError(f"following {self.name} stopped: {data['error']}", code="log")
        raw = str(data.get("data") or "").encode()
        start = int(data.get("offset") or 0)
        stop = start + len(raw)
        if data.get("reset"):  # rotated or truncated: what follows starts a new file
            self.end = stop
            return raw.decode(errors="replace")
        if stop <= self.end:
            return ""  # given out already (the tail had it)
        if start > self.end:
            return await self._catch_up()  # a gap: fill it from the tail, this chunk included
        text = raw[self.end - start :].decode(errors="replace")
        self.end = stop
        return text

    async def _catch_up(self) -> str:
        """What the stream did not bring, read from the tail (all of it after a rotation)."""
        size = (await self.client.log_tail(self.instance_id, self.name, 0)).size
        missing = size - self.end
        if missing == 0:
            return ""
        if 0 < missing <= self.tail_bytes:
            tail = await self.client.log_tail(self.instance_id, self.name, missing)
            if tail.offset == self.end:
                self.end = tail.end
                return tail.text
        tail = await self.client.log_tail(self.instance_id, self.name, self.tail_bytes)
        self.end = tail.end
        return tail.text
