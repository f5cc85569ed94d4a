"""The seed's worker `-port`: when given, a tiny loopback-only health endpoint.

`GET /healthz` -> `{"status","connected","node_id","instances"}`. Anything else is 404.
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any


async def serve(port: int, status: Callable[[], dict[str, Any]]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            # Drain headers; a local health probe sends a handful at most.
            for _ in range(100):
                if await asyncio.wait_for(reader.readline(), 5) in (b"\r\n", b"\n", b""):
                    break
            parts = request.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1] == "/healthz":
                body, code = json.dumps(status()).encode(), "200 OK"
            else:
                body, code = b'{"error":"not found"}', "404 Not Found"
            writer.write(
                f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)
