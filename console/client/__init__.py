"""The GDOS API from Python: one typed method per endpoint, no Qt, usable from scripts.

    async with Client("http://127.0.0.1:8080") as c:
        await c.login("admin", password)
        for node in await c.nodes():
            print(node.hostname, node.status)

Modules: rest (`Client`, the endpoints), transport (requests, credentials, TLS), tus (package
uploads), logs (log files and tails), follow (`LogFollower`: one log followed), events (the event stream), errors (`ClientError`).

Exceptions (all failures of a call become one of these, with the server's own words):

    ClientError            any failed call: .status (None when the master was not reached),
                           .code (the API's error code), .message (one sentence for a person)
      .unreachable         True when no answer came (connection refused, timeout, TLS)
      .endpoint_missing    True when this master does not have the endpoint (404/405 on the
                           route itself): views say "not available on this master"
"""

from console.client.errors import ClientError
from console.client.events import EventHandler, EventStream, StatusHandler
from console.client.follow import LogFollower
from console.client.logs import LogTail
from console.client.rest import Client
from console.client.transport import API, CHUNK, ssl_context
from console.client.tus import TUS_CHUNK, Progress

__all__ = [
    "API",
    "CHUNK",
    "TUS_CHUNK",
    "Client",
    "ClientError",
    "EventHandler",
    "EventStream",
    "LogFollower",
    "LogTail",
    "Progress",
    "StatusHandler",
    "ssl_context",
]
