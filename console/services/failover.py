"""Several masters: when the one the session is on stops answering, go on on another.

"Stops answering" is a request refused or cut (`Transport.on_gone`), or the event stream down
for `GRACE` seconds without coming back on the same URL. The session's masters are then tried
in order after the lost one, with jittered backoff, round the list until one answers: the same
token works on every master (they share the database), so the move needs no password. A request
that failed on the lost master is never sent again by itself: its failure was reported, and the
notice of the move says so, so the user decides. A log-in with one URL never moves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal

from console.client import Client, ClientError
from console.client.events import Keepalive
from console.client.masters import after, backoff

if TYPE_CHECKING:
    from console.services.session import Session

log = logging.getLogger(__name__)
GRACE = 3.0  # seconds the stream may stay down on the same URL before the session moves
# The stream's with several masters: a hung master's link is dropped within 5.5 s.
KEEPALIVE = Keepalive(2.0, 2.5, 1.0)
PROBE_TIMEOUT = 5.0  # seconds a master gets to answer `GET /masters` before the next is tried


class Failover(QObject):
    moving = Signal(str, str)  # the lost master's URL, why it is left
    moved = Signal(str, str, str)  # from URL, to URL, the new master's id ("" if unknown)
    refused = Signal(str)  # no master takes this log-in any more: a sentence

    def __init__(self, session: Session, grace: float = GRACE) -> None:
        super().__init__(session)
        self.session = session
        self._task: asyncio.Task[None] | None = None
        self._grace = QTimer(self)
        self._grace.setSingleShot(True)
        self._grace.setInterval(int(grace * 1000))
        self._grace.timeout.connect(lambda: self.start("its event stream did not come back"))
        session.reachable_changed.connect(self._reachable)

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def watch(self, client: Client) -> None:
        """Move when a request of `client` (the session's now) finds its master gone."""
        client.on_gone = lambda: self._gone(client)

    def _gone(self, client: Client) -> None:
        if client is self.session.client:
            self.start("it refused or cut a request")

    def _reachable(self, reachable: bool, reason: str) -> None:
        if reachable or not self.session.several:
            self._grace.stop()
        elif not self._grace.isActive() and not self.active:
            self._grace.start()

    def start(self, reason: str) -> None:
        """Leave the master the session is on (once: a move under way is not started again)."""
        client = self.session.client
        if client is None or not self.session.several or self.active:
            return
        self._grace.stop()
        self._task = asyncio.ensure_future(self._move(client, reason))

    def cancel(self) -> None:
        self._grace.stop()
        if self.active and self._task is not asyncio.current_task():
            assert self._task is not None
            self._task.cancel()
        self._task = None

    async def _move(self, lost: Client, reason: str) -> None:
        session = self.session
        log.warning("the master at %s is left: %s", lost.base_url, reason)
        self.moving.emit(lost.base_url, reason)
        await session.stop_stream(timeout=1.0)  # a daemon thread: a hung link may outlive this
        session.mark_unreachable(
            f"the master at {lost.base_url} stopped answering; moving to another"
        )
        attempt = 0
        while session.client is lost:
            for url in after(session.urls, lost.base_url):
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                if session.client is not lost:
                    return
                try:
                    found = await self._try(url, lost)
                except Refused as exc:
                    self.refused.emit(f"{exc}: log in again")
                    return
                if found is None:
                    continue
                client, master_id = found
                if session.client is not lost:  # logged out or in elsewhere meanwhile
                    await client.close()
                    return
                await session.switch(client, master_id)
                log.warning("moved from %s to %s (master %s)", lost.base_url, url, master_id)
                self.moved.emit(lost.base_url, url, master_id)
                return

    async def _try(self, url: str, lost: Client) -> tuple[Client, str] | None:
        """A client of the master at `url` with the session's token, and that master's id; None
        when it does not answer; `Refused` when it does not take the token."""
        client = Client(url, verify=self.session.verify, token=lost.token)
        try:
            masters = await asyncio.wait_for(client.masters(), PROBE_TIMEOUT)
        except (ClientError, TimeoutError) as exc:
            await client.close()
            if isinstance(exc, ClientError) and exc.status == 401:
                raise Refused(f"the master at {url} no longer takes this log-in") from None
            log.info("master %s not taken: %s", url, exc)
            return None
        return client, masters[0].id if masters else ""


class Refused(Exception):
    """A master answered but refused the session's token: only a new log-in helps."""
