"""An instance's logs: which there are, and the end of one (followed live through events)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx

from console.client.transport import Transport
from protocol.rest_records import LogFileOut


@dataclass(frozen=True)
class LogTail:
    """The end of a log: `text` holds the file's bytes [offset, offset + length)."""

    text: str
    size: int  # the file's size when read
    offset: int  # where `text` starts in the file
    length: int  # bytes read

    @property
    def end(self) -> int:
        return self.offset + self.length


class Logs(Transport):
    async def logs(self, instance_id: str) -> list[LogFileOut]:
        """stdout, stderr, then the manifest's log_paths (409 while the node is offline)."""
        return await self._list(f"/instances/{instance_id}/logs", LogFileOut)

    async def log_tail(self, instance_id: str, name: str, tail_bytes: int = 65536) -> LogTail:
        """The last `tail_bytes` of one log; `tail_bytes=0` asks only for its size."""
        path = f"/instances/{instance_id}/logs/{quote(name, safe='')}"
        resp = await self.request("GET", path, params={"tail_bytes": tail_bytes})
        data = resp.content
        size = _int_header(resp, "X-Log-Size", len(data))
        return LogTail(
            data.decode("utf-8", errors="replace"),
            size,
            _int_header(resp, "X-Log-Offset", size - len(data)),
            len(data),
        )


def _int_header(resp: httpx.Response, name: str, default: int) -> int:
    try:
        return int(resp.headers.get(name, default))
    except ValueError:
        return default
