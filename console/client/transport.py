"""One master's HTTP connection: credentials, requests that fail as `ClientError`, downloads."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from console.client.errors import M, error_from, parse, parse_list, transport_error
from console.client.masters import is_gone
from protocol.rest import UserOut

API = "/api/v1"
CHUNK = 1 << 20


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """`True` (system CAs), `False` (no checks) or a CA bundle path: one context for both the
    REST calls (httpx) and the event stream (websockets), so they trust the same master."""
    ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Transport:
    """An async connection to one master. `token` is set by `login()` or given directly."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.verify = verify
        self.token = token
        self.user: UserOut | None = None
        # Called when a request finds this master gone (refused, cut): a console with several
        # masters moves to another.
        self.on_gone: Callable[[], None] | None = None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=10.0),
            verify=ssl_context(verify),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: Any = None,
        absolute: bool = False,
    ) -> httpx.Response:
        """One call under /api/v1 (or `path` as given with `absolute`); an error status or no
        answer raises ClientError. Parameters that are None or "" are left out."""
        url = path if absolute else API + path
        if params:
            params = {k: v for k, v in params.items() if v is not None and v != ""}
        try:
            resp = await self._http.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=self._headers(headers),
                content=content,
            )
        except httpx.HTTPError as exc:
            self._failed(exc)
            raise transport_error(self.base_url, exc, method) from None
        if resp.is_error:
            raise error_from(resp)
        return resp

    def _failed(self, exc: httpx.HTTPError) -> None:
        if self.on_gone is not None and is_gone(exc):
            self.on_gone()

    async def _get(self, path: str, model: type[M], **params: Any) -> M:
        return parse(model, (await self.request("GET", path, params=params)).json())

    async def _list(self, path: str, model: type[M], **params: Any) -> list[M]:
        data = (await self.request("GET", path, params=params)).json()
        return parse_list(model, data)

    async def _send(self, method: str, path: str, model: type[M], body: Any = None) -> M:
        return parse(model, (await self.request(method, path, json_body=body)).json())

    async def _download(self, url: str, dest: Path) -> None:
        """Stream `url` into `dest` through a `.part` file, so `dest` is whole or absent."""
        part = dest.with_name(dest.name + ".part")
        try:
            async with self._http.stream(
                "GET", url, headers=self._headers(), follow_redirects=True
            ) as resp:
                if resp.is_error:
                    await resp.aread()
                    raise error_from(resp)
                with open(part, "wb") as f:
                    async for chunk in resp.aiter_bytes(CHUNK):
                        f.write(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            self._failed(exc)
            raise transport_error(self.base_url, exc) from None
        os.replace(part, dest)
