"""Text messages of a WebSocket handed to the app in the transport's callback.

Through ASGI, every message is a dict put on the connection's queue, a wake-up of the app's
task on the next turn of the event loop (another `epoll_wait`), and a resumption of the task
through every coroutine frame between the protocol and the endpoint: for an agent's metrics
message, more CPU than decoding and storing it. An endpoint whose per-message work is
synchronous can instead attach a *sink* (the `DIRECT_TEXT` scope extension): while the app is
waiting in `receive` with nothing queued, each complete text message is given to the sink as
soon as the frame is parsed, in `data_received`. The sink returns False to leave a message to
`receive` after all (one that needs to await, or closes the socket); messages after it are
queued too until the app takes them, so the app sees every message once and in order.

Frames are still parsed by `websockets` (size limit, control frames, close codes, ping/pong),
and binary frames always go through the queue.
"""

import asyncio
from collections.abc import Callable
from typing import Any, Literal

DIRECT_TEXT = "gdos.direct_text"  # the scope extension: call it with a sink (or None)
TextSink = Callable[[str], bool]  # True: handled; False: deliver it through `receive`
CLOSE_INTERNAL_ERROR = 1011


class DirectText:
    """Mixed in before uvicorn's `WebSocketsSansIOProtocol`."""

    # What the mixin reads of uvicorn's protocol.
    scope: Any
    conn: Any
    queue: asyncio.Queue[Any]
    transport: asyncio.Transport
    frames: list[bytes]
    curr_msg_data_type: Literal["text", "bytes"]
    close_sent: bool
    logger: Any

    _sink: TextSink | None = None
    _receiving = False  # the app is waiting in `receive`

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)  # type: ignore[misc]
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake was accepted: the app's task was created
            scope.setdefault("extensions", {})[DIRECT_TEXT] = self._attach

    def _attach(self, sink: TextSink | None) -> None:
        self._sink = sink

    async def receive(self) -> Any:
        self._receiving = True
        try:
            return await super().receive()  # type: ignore[misc]
        finally:
            self._receiving = False

    def send_receive_event_to_app(self) -> None:
        sink = self._sink
        if (
            sink is None
            or not self._receiving
            or self.curr_msg_data_type != "text"
            or self.close_sent
            or not self.queue.empty()  # the app has not taken an earlier message yet
        ):
            super().send_receive_event_to_app()  # type: ignore[misc]
            return
        frames = self.frames
        try:
            text = (frames[0] if len(frames) == 1 else b"".join(frames)).decode()
        except UnicodeDecodeError:
            super().send_receive_event_to_app()  # type: ignore[misc]  # uvicorn closes: 1007
            return
        try:
            taken = sink(text)
        except Exception:
            # As uvicorn does for an app that raises: logged, and the connection ends (the
            # app's `receive` then answers a disconnect).
            self.logger.exception("Exception in a WebSocket's direct receiver")
            self._fail(CLOSE_INTERNAL_ERROR, "internal error")
            return
        if taken:
            self.frames = []
        else:
            super().send_receive_event_to_app()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink = None  # nothing holds the app's objects once the socket is gone
        super().connection_lost(exc)  # type: ignore[misc]

    def _fail(self, code: int, reason: str) -> None:
        self._sink = None
        self.frames = []
        self.conn.fail(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()


def direct_text(extensions: dict[str, Any] | None) -> Callable[[TextSink | None], None] | None:
    """The connection's attach function, or None when the server does not offer it (another
    ASGI server, a test client): the app then reads every message through `receive`."""
    return (extensions or {}).get(DIRECT_TEXT)
