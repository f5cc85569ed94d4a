"""One writer per resumable upload across masters: a lease on the upload's row.

A writer takes the row by compare-and-set (`writer` empty or its lease over), renews the lease
while it works, records each step only `WHERE writer = :mine` and gives the row back at the end.
No master holds a lock in memory or a database connection while a body streams; a master that
dies holding an upload blocks it for `LEASE` seconds at most, and one that wakes up after losing
it can record nothing.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import delete, or_, update

from master.db import models
from master.db.session import Database
from protocol.errors import ErrorCode, GdosError

log = logging.getLogger(__name__)

LEASE = 10.0
RENEW_EVERY = LEASE / 4
POLL = 0.05

Upload = models.PackageUpload


def busy(upload_id: str) -> GdosError:
    return GdosError(
        ErrorCode.CONFLICT, f"upload {upload_id} is busy with another request; retry in a moment"
    )


def taken_over(upload_id: str) -> GdosError:
    return GdosError(
        ErrorCode.CONFLICT,
        f"upload {upload_id} was taken over by another request; ask with HEAD and resume",
    )


class Claim:
    """This master's turn at one upload (a random token in the row's `writer`)."""

    def __init__(self, db: Database, upload_id: str) -> None:
        self.db = db
        self.upload_id = upload_id
        self.token = secrets.token_hex(8)
        self.lost = False

    def _update(self, **values: Any) -> bool:
        """Write `values` if this claim still holds the row."""
        stmt = (
            update(Upload)
            .where(Upload.id == self.upload_id, Upload.writer == self.token)
            .values(**values)
        )
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def try_take(self) -> bool:
        now = self.db.now()
        stmt = (
            update(Upload)
            .where(
                Upload.id == self.upload_id, or_(Upload.writer.is_(None), Upload.lease_until < now)
            )
            .values(writer=self.token, lease_until=now + LEASE)
        )
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def record(self, ttl: float, **values: Any) -> None:
        """Write a step of the upload, which renews the lease and pushes back its expiry;
        `taken_over` when another writer has the row now."""
        now = self.db.now()
        stamps = {"lease_until": now + LEASE, "updated_at": now, "expires_at": now + ttl}
        if not self._update(**stamps, **values):
            self.lost = True
            raise taken_over(self.upload_id)

    def delete(self) -> bool:
        """Remove the upload's row, if this claim still holds it."""
        with self.db.engine.begin() as conn:
            stmt = delete(Upload).where(Upload.id == self.upload_id, Upload.writer == self.token)
            return conn.execute(stmt).rowcount == 1

    def renew(self) -> None:
        if not self._update(lease_until=self.db.now() + LEASE):
            self.lost = True

    def release(self) -> None:
        self._update(writer=None, lease_until=0.0)

    async def _keep(self) -> None:
        while not self.lost:
            await asyncio.sleep(RENEW_EVERY)
            try:
                self.renew()
            except Exception:  # the database away for a moment: the next turn tries again
                log.exception("could not renew the lease on upload %s", self.upload_id)


async def take(db: Database, upload_id: str, wait: float) -> Claim:
    """The upload's row for this writer, waiting up to `wait` seconds for another to finish."""
    claim = Claim(db, upload_id)
    deadline = time.monotonic() + wait
    while not claim.try_take():
        if time.monotonic() >= deadline:
            raise busy(upload_id)
        await asyncio.sleep(POLL)
    return claim


@contextlib.asynccontextmanager
async def holding(db: Database, upload_id: str, wait: float) -> AsyncIterator[Claim]:
    """Take the row, keep its lease alive meanwhile, give it back at the end."""
    claim = await take(db, upload_id, wait)
    keeper = asyncio.create_task(claim._keep())
    try:
        yield claim
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        try:
            claim.release()
        except Exception:  # the lease runs out by itself
            log.exception("could not give back upload %s", upload_id)


def held(row: models.PackageUpload, now: float) -> bool:
    """A writer holds the upload at `now` (by the database's clock)."""
    return row.writer is not None and row.lease_until >= now
