"""One PATCH body appended to an upload kept in the bucket as S3 multipart parts.

Bytes collect in memory until they fill a part; the part goes to S3 while the next one fills
(one in flight at a time), and once S3 has it the part is recorded in the upload's row under the
writer's claim, with the new offset: the row is the truth every master reads. What is left when
the body ends becomes a part if it is the upload's last bytes or big enough, else the "tail"
object, prepended by whichever master receives the next PATCH (as tusd's s3store does). A tail
replaced is deleted only once the row no longer names it, so a failure leaves the row's state
whole.
"""

import asyncio
import contextlib
from typing import Any

from master.db import models
from master.services.upload_claims import Claim
from master.storage.multipart import MAX_PARTS, MIN_PART, Multipart, part_size_for
from protocol.errors import ErrorCode, GdosError


class PartSink:
    def __init__(
        self, parts: Multipart, claim: Claim, row: models.PackageUpload, tail: bytes, ttl: float
    ) -> None:
        self.parts = parts
        self.claim = claim
        self.row = row
        self.ttl = ttl
        self.size = part_size_for(row.length)
        self.recorded: list[list[Any]] = [list(p) for p in row.parts or []]
        self._before = ([list(p) for p in self.recorded], row.tail_key, row.tail_size, row.offset)
        self._held = bytearray(tail)  # bytes not yet sent, at most a part and a chunk
        self.base = row.offset - len(tail)  # where the bytes held in memory start in the upload
        self.fed = 0  # bytes of this body
        self.last_part = row.last_part
        self._flight: asyncio.Task[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        self._held += chunk
        self.fed += len(chunk)
        while len(self._held) >= self.size:
            await self._send(self._take(self.size))

    async def close(self) -> None:
        """The body ended or was cut: record what is left (a part or the tail)."""
        await self._land()
        if self.fed == 0:
            return  # nothing new: the row and its tail stay as they were
        rest = self._take(len(self._held))
        end = self.base + len(rest)
        tail_key: str | None = None
        if rest and (end == self.row.length or len(rest) >= MIN_PART):
            await self._send(rest)
            await self._land()
        elif rest:
            tail_key = self.parts.tail_key(self.row.id, self.base, self.claim.token)
            await self.parts.put_tail(tail_key, rest)
            self.claim.record(self.ttl, tail_key=tail_key, tail_size=len(rest), offset=end)
        old = self._before[1]
        if old is not None and old != tail_key:
            with contextlib.suppress(GdosError):  # the bytes are recorded: only litter is left
                await self.parts.delete([old])

    async def undo(self) -> None:
        """Put the row back as it was before this body (a body longer than the upload)."""
        await self.abandon()
        parts, tail_key, tail_size, offset = self._before
        self.claim.record(
            self.ttl, parts=parts, tail_key=tail_key, tail_size=tail_size, offset=offset
        )

    async def abandon(self) -> None:
        """Wait for a part still in flight after a failure."""
        flight, self._flight = self._flight, None
        if flight is not None:
            with contextlib.suppress(Exception):
                await flight

    def _take(self, n: int) -> bytes:
        with memoryview(self._held) as view:
            data = bytes(view[:n])
        del self._held[:n]
        return data

    async def _send(self, data: bytes) -> None:
        await self._land()  # the part before is in S3 and recorded first
        # The number is taken in the row before the part goes out: a writer that lost the upload
        # while its part was in flight can only overwrite a number nobody else will use.
        self.last_part += 1
        if self.last_part > MAX_PARTS:
            raise GdosError(
                ErrorCode.TOO_LARGE,
                f"upload {self.row.id} has used all {MAX_PARTS} parts the bucket allows; "
                "upload the package again in larger PATCHes",
            )
        self.claim.record(self.ttl, last_part=self.last_part)
        self.base += len(data)
        self._flight = asyncio.create_task(self._upload(self.last_part, data))

    async def _upload(self, number: int, data: bytes) -> None:
        etag = await self.parts.put_part(self.row.id, self.row.s3_upload or "", number, data)
        self.recorded.append([number, len(data), etag])
        offset = sum(size for _n, size, _etag in self.recorded)
        self.claim.record(
            self.ttl, parts=list(self.recorded), tail_key=None, tail_size=0, offset=offset
        )

    async def _land(self) -> None:
        flight, self._flight = self._flight, None
        if flight is not None:
            await flight
