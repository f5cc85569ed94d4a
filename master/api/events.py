"""The console event stream: state changes pushed as they happen."""

import asyncio
import json
import logging
from collections.abc import Callable

from fastapi import APIRouter, WebSocket

from master.api import wsutil
from master.api.deps import ServicesDep, bearer_token, resolve_principal
from master.api.errors import error_response
from master.hub import Subscriber
from master.services.peer_secret import PEER_HEADER, SECRET_HEADER
from master.services.throttle import LogBudget
from protocol.errors import ErrorCode
from protocol.messages import CLOSE_AUTH_FAILED, CLOSE_POLICY, CLOSE_TOO_SLOW

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["events"])

MAX_KEYS = 256
MAX_PEER_KEYS = 16_384  # a peer master subscribes for all of its consoles at once
MAX_BATCH = 1000
_refusals = LogBudget()  # lines callers with a wrong peer secret can cause in the master's log


@router.websocket("/events")
async def events(ws: WebSocket, svc: ServicesDep) -> None:
    if wsutil.cross_origin(ws):
        await ws.close(CLOSE_POLICY, "cross-origin WebSocket refused")
        return
    peer = ws.headers.get(PEER_HEADER)
    if peer is not None:
        if not svc.peer_secret.check(ws.headers.get(SECRET_HEADER)):
            client = ws.client.host if ws.client else "?"
            held = _refusals.allow(client)
            if held is not None:
                log.warning(
                    "refused an event stream from %s (master %.32r): wrong peer secret%s",
                    client,
                    peer,
                    f" ({held} more not logged)" if held else "",
                )
            message = "wrong or missing master-to-master secret (X-Gdos-Peer-Secret)"
            await ws.send_denial_response(
                error_response(401, ErrorCode.UNAUTHENTICATED.value, message)
            )
            return
    else:
        token = bearer_token(ws) or ws.query_params.get("token")
        with svc.db.session() as s:
            principal = resolve_principal(s, token)
        if principal is None or principal.is_node:
            await ws.close(CLOSE_AUTH_FAILED, "log in first: a user token is required")
            return
    await ws.accept()
    sub = svc.hub.subscribe()
    sub.peer = peer is not None
    reader = asyncio.create_task(_read_subscriptions(ws, sub, svc.hub.keys_changed))
    writer = asyncio.create_task(_write_events(ws, sub))
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        # Disconnects surface here as WebSocketDisconnect/RuntimeError: the client left.
        await asyncio.gather(reader, writer, return_exceptions=True)
        svc.hub.unsubscribe(sub)
        if sub.keys:
            svc.hub.keys_changed()


async def _write_events(ws: WebSocket, sub: Subscriber) -> None:
    # No task per event: the queue overflows only while it holds events, so the overflow is
    # seen as soon as the next one is taken (and `get` returns at once while it holds some).
    queue = sub.queue
    while True:
        text = await queue.get()
        if sub.overflowed.is_set():
            await ws.close(CLOSE_TOO_SLOW, "event stream reader too slow")
            return
        if sub.batch:
            # Everything queued goes in one frame: a batch of 100 instance changes costs
            # one socket write instead of 100.
            texts = [text]
            while len(texts) < MAX_BATCH and not queue.empty():
                texts.append(queue.get_nowait())
            text = "[" + ",".join(texts) + "]"
        await ws.send_text(text)


async def _read_subscriptions(ws: WebSocket, sub: Subscriber, changed: Callable[[], None]) -> None:
    while (text := await wsutil.receive_text(ws)) is not None:
        try:
            msg = json.loads(text)
        except ValueError:
            await wsutil.close(ws, wsutil.CLOSE_INVALID_PAYLOAD, "frames must be JSON")
            return
        if not isinstance(msg, dict):
            await wsutil.close(ws, CLOSE_POLICY, 'send {"subscribe": [...]} objects')
            return
        if "batch" in msg:
            sub.batch = msg["batch"] is True
        limit = MAX_PEER_KEYS if sub.peer else MAX_KEYS
        for key in _keys(msg.get("subscribe")):
            if len(sub.keys) < limit:
                sub.keys.add(key)
        for key in _keys(msg.get("unsubscribe")):
            sub.keys.discard(key)
        changed()


def _keys(value: object) -> list[str]:
    return [k for k in value if isinstance(k, str)] if isinstance(value, list) else []
