"""Webhook delivery against a real local HTTP server: retries with backoff, final failures,
and a bounded queue that drops instead of blocking."""

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from master.services.alerting.webhooks import Notifier


class Receiver:
    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.requests: list[tuple[dict[str, str], dict]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    ({k.lower(): v for k, v in self.headers.items()}, json.loads(body))
                )
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request) -> Iterator[Receiver]:
    r = Receiver(list(getattr(request, "param", [])))
    yield r
    r.close()


@pytest.mark.parametrize("receiver", [[500, 503]], indirect=True)
async def test_failed_deliveries_are_retried_until_they_succeed(receiver):
    notifier = Notifier(base_delay=0.05)
    await notifier.start()
    try:
        assert notifier.enqueue(receiver.url, {"event": "firing", "n": 1}, "firing")
        await notifier.drain()
    finally:
        await notifier.stop()
    assert notifier.sent == 1 and notifier.retried == 2 and notifier.failed == 0
    assert [h["x-gdos-attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]
    assert all(body == {"event": "firing", "n": 1} for _, body in receiver.requests)
    assert len({h["x-gdos-delivery"] for h, _ in receiver.requests}) == 1  # one delivery id
    assert receiver.requests[0][0]["content-type"] == "application/json"


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
async def test_a_client_error_is_final(receiver):
    notifier = Notifier(base_delay=0.05)
    await notifier.start()
    try:
        notifier.enqueue(receiver.url, {"event": "resolved"}, "resolved")
        await notifier.drain()
    finally:
        await notifier.stop()
    assert notifier.failed == 1 and notifier.sent == 0 and len(receiver.requests) == 1


async def test_an_unreachable_endpoint_gives_up_after_the_last_attempt():
    notifier = Notifier(base_delay=0.01, attempts=3)
    await notifier.start()
    try:
        notifier.enqueue("http://127.0.0.1:9/nothing-listens-here", {"x": 1}, "firing")
        await notifier.drain()
    finally:
        await notifier.stop()
    assert notifier.failed == 1 and notifier.retried == 2


async def test_a_full_queue_drops_and_counts_instead_of_blocking():
    notifier = Notifier(maxsize=2)  # not started: nothing drains the queue
    assert notifier.enqueue("http://x/", {}, "firing")
    assert notifier.enqueue("http://x/", {}, "firing")
    assert not notifier.enqueue("http://x/", {}, "firing")
    assert notifier.dropped == 1 and notifier.depth == 2
