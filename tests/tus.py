"""A minimal tus 1.0 client for tests: the protocol spoken directly with httpx and raw sockets."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support import Api

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(api: Api, length: int, expect: int = 201, **headers: Any) -> httpx.Response:
    r = api.client.post(
        "/api/v1/packages/uploads", headers={**TUS, "Upload-Length": str(length), **headers}
    )
    assert r.status_code == expect, r.text
    return r


def head(api: Api, location: str) -> httpx.Response:
    return api.client.head(location, headers=TUS)


def offset(api: Api, location: str) -> int:
    r = head(api, location)
    assert r.status_code == 200, (r.status_code, r.headers)
    return int(r.headers["Upload-Offset"])


def file_part(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def patch(
    api: Api,
    location: str,
    at: int,
    body: bytes | Iterator[bytes],
    length: int | None = None,
    **headers: str,
) -> httpx.Response:
    size = len(body) if isinstance(body, bytes) else length
    extra = {"Content-Length": str(size)} if size is not None else {}
    return api.client.patch(
        location,
        headers={**TUS, "Upload-Offset": str(at), "Content-Type": OCTETS, **extra, **headers},
        content=body,
    )


def patch_file(api: Api, location: str, path: Path, at: int, length: int) -> httpx.Response:
    return patch(api, location, at, file_part(path, at, length), length)


def upload(api: Api, path: Path, chunk: int = 64 << 20) -> tuple[str, httpx.Response]:
    """Create and send a whole file in PATCHes of `chunk` bytes; returns (location, last answer)."""
    size = path.stat().st_size
    headers: dict[str, Any] = {"Upload-Metadata": metadata(filename=path.name)}
    location = create(api, size, **headers).headers["Location"]
    return location, send_rest(api, location, path, chunk)


def send_rest(api: Api, location: str, path: Path, chunk: int = 64 << 20) -> httpx.Response:
    """Resume from HEAD's offset until the end, as a tus client does after a cut (a 409 means
    the master was still settling an earlier PATCH: ask again)."""
    size = path.stat().st_size
    for _ in range(1000):
        at = offset(api, location)
        n = min(chunk, size - at)
        r = patch_file(api, location, path, at, n)
        if r.status_code == 409 and "Upload-Offset" in r.json()["error"]["message"]:
            time.sleep(0.2)
            continue
        if r.status_code != 204 or at + n >= size:
            return r
    raise AssertionError("the upload never finished")


def cut_patch(api: Api, location: str, path: Path, at: int, declared: int, send: int) -> None:
    """Start a PATCH announcing `declared` bytes, send only `send` of them, drop the socket."""
    url = urlsplit(location)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as sock:
        head_lines = [
            f"PATCH {url.path} HTTP/1.1",
            f"Host: {url.netloc}",
            f"Authorization: Bearer {api.token}",
            "Tus-Resumable: 1.0.0",
            f"Upload-Offset: {at}",
            f"Content-Type: {OCTETS}",
            f"Content-Length: {declared}",
        ]
        sock.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        for chunk in file_part(path, at, send):
            sock.sendall(chunk)
    # Closed half way: the master sees the connection end in the middle of the body.
