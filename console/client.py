"""The GDOS API from Python: one typed method per endpoint, no Qt, usable from scripts.

    async with Client("http://127.0.0.1:8080") as c:
        await c.login("admin", password)
        for node in await c.nodes():
            print(node.hostname, node.status)

Exceptions (all failures of a call become one of these, with the server's own words):

    ClientError            any failed call: .status (None when the master was not reached),
                           .code (the API's error code), .message (one sentence for a person)
      .unreachable         True when no answer came (connection refused, timeout, TLS)
      .endpoint_missing    True when this master does not have the endpoint (404/405 on the
                           route itself): views say "not available on this master"
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import websockets
from pydantic import BaseModel, TypeAdapter, ValidationError
from websockets.asyncio.client import ClientConnection

from protocol.monitoring import (
    AlertOut,
    AlertRuleOut,
    InstanceMetricsOut,
    InstanceSample,
    NodeMetricsOut,
    NodeSample,
    SilenceOut,
)
from protocol.rest import (
    AuditOut,
    InstanceOut,
    LoginOut,
    ModuleOut,
    NodeOut,
    OperationOut,
    OperationStarted,
    PackageOut,
    SystemDetail,
    SystemOut,
    UploadOut,
    UserOut,
)
from protocol.rest_records import BackupOut, LogFileOut, RestoreOut

log = logging.getLogger(__name__)
API = "/api/v1"
M = TypeVar("M", bound=BaseModel)
Progress = Callable[[int, int], None]  # (bytes sent, total bytes)

CHUNK = 1 << 20
TUS_CHUNK = 8 << 20


class ClientError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}

    @property
    def unreachable(self) -> bool:
        return self.status is None

    @property
    def endpoint_missing(self) -> bool:
        # The master answers an unknown route with 404 "no such endpoint" (or 405 when the path
        # exists for other methods); a 404 for an unknown *id* carries another message.
        if self.status == 405:
            return True
        return self.status == 404 and self.message in ("no such endpoint", "Not Found")

    def __str__(self) -> str:
        return self.message


def _error_from(resp: httpx.Response) -> ClientError:
    try:
        err = resp.json()["error"]
        return ClientError(
            str(err["message"]),
            status=resp.status_code,
            code=str(err.get("code", "error")),
            details=err.get("details") or {},
        )
    except (ValueError, KeyError, TypeError):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
        reason = resp.reason_phrase or "error"
        msg = f"the master answered {resp.status_code} {reason}" + (f": {text}" if text else "")
        return ClientError(msg, status=resp.status_code, code=f"http_{resp.status_code}")


def _transport_error(base_url: str, exc: Exception) -> ClientError:
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, ssl.SSLError) or "CERTIFICATE" in str(exc).upper():
        what = f"TLS failed ({exc})"
    elif isinstance(exc, httpx.ConnectError):
        what = "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({exc})"
    else:
        what = str(exc) or type(exc).__name__
    return ClientError(f"cannot reach the master at {base_url}: {what}", code="unreachable")


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """`True` (system CAs), `False` (no checks) or a CA bundle path: one context for both the
    REST calls (httpx) and the event stream (websockets), so they trust the same master."""
    ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    """An async client of one master. `token` is set by `login()` or given directly."""

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
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=10.0),
            verify=ssl_context(verify),
            transport=transport,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------------

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
            raise _transport_error(self.base_url, exc) from None
        if resp.is_error:
            raise _error_from(resp)
        return resp

    async def _get(self, path: str, model: type[M], **params: Any) -> M:
        return _parse(model, (await self.request("GET", path, params=params)).json())

    async def _list(self, path: str, model: type[M], **params: Any) -> list[M]:
        data = (await self.request("GET", path, params=params)).json()
        return _parse_list(model, data)

    async def _send(self, method: str, path: str, model: type[M], body: Any = None) -> M:
        return _parse(model, (await self.request(method, path, json_body=body)).json())

    # -- auth and users -------------------------------------------------------------------

    async def healthz(self) -> dict[str, Any]:
        data: dict[str, Any] = (await self.request("GET", "/healthz", absolute=True)).json()
        return data

    async def login(self, username: str, password: str) -> LoginOut:
        out = await self._send(
            "POST", "/auth/login", LoginOut, {"username": username, "password": password}
        )
        self.token = out.token
        self.user = out.user
        return out

    async def users(self) -> list[UserOut]:
        return await self._list("/users", UserOut)

    async def create_user(self, username: str, password: str, role: str) -> UserOut:
        body = {"username": username, "password": password, "role": role}
        return await self._send("POST", "/users", UserOut, body)

    async def delete_user(self, username: str) -> None:
        await self.request("DELETE", f"/users/{username}")

    # -- nodes ----------------------------------------------------------------------------

    async def nodes(self) -> list[NodeOut]:
        return await self._list("/nodes", NodeOut)

    async def node(self, node_id: str) -> NodeOut:
        return await self._get(f"/nodes/{node_id}", NodeOut)

    async def set_node_labels(self, node_id: str, labels: dict[str, str]) -> NodeOut:
        return await self._send("PATCH", f"/nodes/{node_id}", NodeOut, {"labels": labels})

    async def delete_node(self, node_id: str) -> None:
        await self.request("DELETE", f"/nodes/{node_id}")

    async def node_metrics(self, node_id: str, seconds: float = 300) -> list[NodeSample]:
        """Per-second samples for the recent window, per-minute averages before it."""
        out = await self._get(f"/nodes/{node_id}/metrics", NodeMetricsOut, seconds=seconds)
        return out.samples

    # -- packages -------------------------------------------------------------------------

    async def packages(self) -> list[PackageOut]:
        return await self._list("/packages", PackageOut)

    async def package(self, package_id: str) -> PackageOut:
        return await self._get(f"/packages/{package_id}", PackageOut)

    async def delete_package(self, package_id: str) -> None:
        await self.request("DELETE", f"/packages/{package_id}")

    async def download_package(self, package_id: str, dest: Path) -> Path:
        await self._download(f"{API}/packages/{package_id}/download", dest)
        return dest

    async def upload_package(
        self, path: Path, progress: Progress | None = None, retries: int = 3
    ) -> PackageOut:
        """One-shot streamed upload; restarted from the beginning when the connection drops."""
        size = path.stat().st_size
        for attempt in range(retries + 1):
            try:
                resp = await self.request(
                    "POST",
                    "/packages",
                    content=_read_chunks(path, 0, progress, size),
                    headers={"Content-Type": "application/zip", "Content-Length": str(size)},
                )
                return _parse(PackageOut, resp.json())
            except ClientError as exc:
                if not exc.unreachable or attempt == retries:
                    raise
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def tus_available(self) -> bool:
        """Whether this master speaks tus on /packages/uploads (API.md resumable upload)."""
        try:
            resp = await self.request("OPTIONS", "/packages/uploads")
        except ClientError as exc:
            if exc.endpoint_missing or exc.status in (400, 404, 405, 501):
                return False
            raise
        return "tus-version" in resp.headers or "tus-resumable" in resp.headers

    async def uploads(self) -> list[UploadOut]:
        """Resumable uploads in progress and recently finished, newest first."""
        return await self._list("/packages/uploads", UploadOut)

    async def cancel_upload(self, location: str) -> None:
        """Abandon a resumable upload (its URL or path) and free its space on the master."""
        await self.request(
            "DELETE", _absolute_path(location), absolute=True, headers={"Tus-Resumable": "1.0.0"}
        )

    async def tus_upload(
        self,
        path: Path,
        progress: Progress | None = None,
        *,
        resume_url: str | None = None,
        on_created: Callable[[str], None] | None = None,
        retries: int = 8,
        chunk_size: int = TUS_CHUNK,
    ) -> PackageOut:
        """Resumable upload (tus 1.0): a dropped connection resumes from the server's offset."""
        size = path.stat().st_size
        tus = {"Tus-Resumable": "1.0.0"}
        url = resume_url
        if url is None:
            meta = "filename " + base64.b64encode(path.name.encode()).decode()
            resp = await self.request(
                "POST",
                "/packages/uploads",
                headers={**tus, "Upload-Length": str(size), "Upload-Metadata": meta},
            )
            url = _absolute_path(resp.headers["Location"])
            if on_created:
                on_created(url)
        failures = 0
        offset = await self._tus_offset(url, tus)
        while offset < size:
            end = min(size, offset + chunk_size)
            try:
                resp = await self.request(
                    "PATCH",
                    url,
                    absolute=True,
                    content=_read_chunks(path, offset, progress, size, end),
                    headers={
                        **tus,
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                        "Content-Length": str(end - offset),
                    },
                )
                offset = int(resp.headers.get("Upload-Offset", end))
                failures = 0
            except ClientError as exc:
                if not (exc.unreachable or exc.status == 409) or failures >= retries:
                    raise
                failures += 1
                await asyncio.sleep(min(10.0, 0.25 * 2**failures))
                offset = await self._tus_offset(url, tus, retries)
        if progress:
            progress(size, size)
        return _parse(PackageOut, (await self.request("GET", url, absolute=True)).json())

    async def _tus_offset(self, url: str, tus: dict[str, str], retries: int = 0) -> int:
        for attempt in range(retries + 1):
            try:
                resp = await self.request("HEAD", url, absolute=True, headers=tus)
                return int(resp.headers.get("Upload-Offset", "0"))
            except ClientError as exc:
                if not exc.unreachable or attempt == retries:
                    raise
                await asyncio.sleep(min(10.0, 0.25 * 2 ** (attempt + 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- systems and modules --------------------------------------------------------------

    async def systems(self) -> list[SystemOut]:
        return await self._list("/systems", SystemOut)

    async def system(self, system_id: str) -> SystemDetail:
        return await self._get(f"/systems/{system_id}", SystemDetail)

    async def create_system(self, name: str, description: str = "") -> SystemOut:
        body = {"name": name, "description": description}
        return await self._send("POST", "/systems", SystemOut, body)

    async def update_system(self, system_id: str, description: str) -> SystemOut:
        body = {"description": description}
        return await self._send("PATCH", f"/systems/{system_id}", SystemOut, body)

    async def delete_system(self, system_id: str) -> None:
        await self.request("DELETE", f"/systems/{system_id}")

    async def create_module(
        self,
        system_id: str,
        name: str,
        package: str,
        version: str | None = None,
        start_order: int = 1,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> ModuleOut:
        body = {
            "name": name,
            "package": package,
            "version": version,
            "start_order": start_order,
            "env": env or {},
            "args": args,
        }
        return await self._send("POST", f"/systems/{system_id}/modules", ModuleOut, body)

    async def update_module(self, module_id: str, **changes: Any) -> ModuleOut:
        return await self._send("PATCH", f"/modules/{module_id}", ModuleOut, changes)

    async def delete_module(self, module_id: str) -> None:
        await self.request("DELETE", f"/modules/{module_id}")

    async def start_system(
        self, system_id: str, ready_timeout: float | None = None
    ) -> OperationStarted:
        """Start every instance level by level (202); follow it with `operation` events."""
        body = {"ready_timeout": ready_timeout} if ready_timeout is not None else None
        return await self._send("POST", f"/systems/{system_id}/start", OperationStarted, body)

    async def stop_system(self, system_id: str) -> OperationStarted:
        return await self._send("POST", f"/systems/{system_id}/stop", OperationStarted)

    async def operation(self, operation_id: str) -> OperationOut:
        return await self._get(f"/operations/{operation_id}", OperationOut)

    async def operations(
        self, system_id: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[OperationOut]:
        return await self._list(
            "/operations", OperationOut, system_id=system_id, state=state, limit=limit
        )

    # -- instances ------------------------------------------------------------------------

    async def instances(
        self, system_id: str | None = None, node_id: str | None = None, state: str | None = None
    ) -> list[InstanceOut]:
        return await self._list(
            "/instances", InstanceOut, system_id=system_id, node_id=node_id, state=state
        )

    async def instance(self, instance_id: str) -> InstanceOut:
        return await self._get(f"/instances/{instance_id}", InstanceOut)

    async def deploy(self, module_id: str, node_id: str) -> InstanceOut:
        body = {"module_id": module_id, "node_id": node_id}
        return await self._send("POST", "/instances", InstanceOut, body)

    async def start_instance(self, instance_id: str) -> InstanceOut:
        return await self._send("POST", f"/instances/{instance_id}/start", InstanceOut)

    async def stop_instance(self, instance_id: str) -> InstanceOut:
        return await self._send("POST", f"/instances/{instance_id}/stop", InstanceOut)

    async def restart_instance(self, instance_id: str) -> InstanceOut:
        return await self._send("POST", f"/instances/{instance_id}/restart", InstanceOut)

    async def destroy_instance(self, instance_id: str, force: bool = False) -> InstanceOut:
        path = f"/instances/{instance_id}" + ("?force=true" if force else "")
        return await self._send("DELETE", path, InstanceOut)

    async def adopt(self, body: dict[str, Any]) -> InstanceOut:
        return await self._send("POST", "/instances/adopt", InstanceOut, body)

    async def instance_metrics(
        self, instance_id: str, seconds: float = 300
    ) -> list[InstanceSample]:
        path = f"/instances/{instance_id}/metrics"
        return (await self._get(path, InstanceMetricsOut, seconds=seconds)).samples

    # -- logs -----------------------------------------------------------------------------

    async def logs(self, instance_id: str) -> list[LogFileOut]:
        """stdout, stderr, then the manifest's log_paths (409 while the node is offline)."""
        return await self._list(f"/instances/{instance_id}/logs", LogFileOut)

    async def log_tail(self, instance_id: str, name: str, tail_bytes: int = 65536) -> LogTail:
        """The last `tail_bytes` of one log; `tail_bytes=0` asks only for its size."""
        path = f"/instances/{instance_id}/logs/{_quote(name)}"
        resp = await self.request("GET", path, params={"tail_bytes": tail_bytes})
        data = resp.content
        size = _int_header(resp, "X-Log-Size", len(data))
        return LogTail(
            data.decode("utf-8", errors="replace"),
            size,
            _int_header(resp, "X-Log-Offset", size - len(data)),
            len(data),
        )

    # -- alerts ---------------------------------------------------------------------------

    async def alert_rules(self) -> list[AlertRuleOut]:
        return await self._list("/alert-rules", AlertRuleOut)

    async def create_alert_rule(self, body: dict[str, Any]) -> AlertRuleOut:
        return await self._send("POST", "/alert-rules", AlertRuleOut, body)

    async def update_alert_rule(self, rule_id: str, changes: dict[str, Any]) -> AlertRuleOut:
        """Only the given fields change."""
        return await self._send("PATCH", f"/alert-rules/{rule_id}", AlertRuleOut, changes)

    async def delete_alert_rule(self, rule_id: str) -> None:
        await self.request("DELETE", f"/alert-rules/{rule_id}")

    async def alerts(
        self,
        state: str | None = None,
        since: str | None = None,
        rule_id: str | None = None,
        target_id: str | None = None,
        limit: int = 500,
    ) -> list[AlertOut]:
        """Firing and resolved alerts, newest first."""
        return await self._list(
            "/alerts",
            AlertOut,
            state=state,
            since=since,
            rule_id=rule_id,
            target_id=target_id,
            limit=limit,
        )

    async def ack_alert(self, alert_id: str) -> AlertOut:
        return await self._send("POST", f"/alerts/{alert_id}/ack", AlertOut)

    async def silences(self, include_expired: bool = False) -> list[SilenceOut]:
        params = {"all": "true"} if include_expired else {}
        return await self._list("/silences", SilenceOut, **params)

    async def create_silence(self, body: dict[str, Any]) -> SilenceOut:
        """`{"matcher": {...}, "duration_seconds" | "ends_at", "comment"}`."""
        return await self._send("POST", "/silences", SilenceOut, body)

    async def delete_silence(self, silence_id: str) -> None:
        await self.request("DELETE", f"/silences/{silence_id}")

    # -- audit and backups ----------------------------------------------------------------

    async def audit(
        self,
        since: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 500,
    ) -> list[AuditOut]:
        return await self._list(
            "/audit", AuditOut, since=since, actor=actor, action=action, limit=limit
        )

    async def audit_csv(
        self,
        since: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 100_000,
    ) -> str:
        params = {"since": since, "actor": actor, "action": action, "limit": limit}
        return (await self.request("GET", "/audit", params={**params, "format": "csv"})).text

    async def backups(self) -> list[BackupOut]:
        return await self._list("/backups", BackupOut)

    async def create_backup(self) -> BackupOut:
        return await self._send("POST", "/backups", BackupOut)

    async def delete_backup(self, backup_id: str) -> None:
        await self.request("DELETE", f"/backups/{backup_id}")

    async def download_backup(self, backup_id: str, dest: Path) -> Path:
        await self._download(f"{API}/backups/{backup_id}/download", dest)
        return dest

    async def restore_backup(self, backup_id: str) -> RestoreOut:
        """Admin only; the master serves the restored state at once (no restart)."""
        return await self._send("POST", f"/backups/{backup_id}/restore", RestoreOut)

    async def _download(self, url: str, dest: Path) -> None:
        part = dest.with_name(dest.name + ".part")
        try:
            async with self._http.stream(
                "GET", url, headers=self._headers(), follow_redirects=True
            ) as resp:
                if resp.is_error:
                    await resp.aread()
                    raise _error_from(resp)
                with open(part, "wb") as f:
                    async for chunk in resp.aiter_bytes(CHUNK):
                        f.write(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise _transport_error(self.base_url, exc) from None
        os.replace(part, dest)

    # -- the event stream -----------------------------------------------------------------

    def events(self) -> EventStream:
        return EventStream(self)


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ClientError(
            f"the master sent an unexpected {model.__name__}: {exc.errors()[0]['msg']}",
            code="bad_response",
        ) from None


def _parse_list(model: type[M], data: Any) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise ClientError(
            f"the master sent an unexpected list of {model.__name__}: {exc.errors()[0]['msg']}",
            code="bad_response",
        ) from None


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


def _int_header(resp: httpx.Response, name: str, default: int) -> int:
    try:
        return int(resp.headers.get(name, default))
    except ValueError:
        return default


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _absolute_path(location: str) -> str:
    """tus `Location` may be absolute or a path; requests go through our base URL either way."""
    if location.startswith(("http://", "https://")):
        return httpx.URL(location).raw_path.decode()
    return location


async def _read_chunks(
    path: Path, start: int, progress: Progress | None, total: int, end: int | None = None
) -> AsyncIterator[bytes]:
    end = total if end is None else end
    sent = start
    with open(path, "rb") as f:
        f.seek(start)
        while sent < end:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, end - sent))
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
            if progress:
                progress(sent, total)


EventHandler = Callable[[str, dict[str, Any]], None]
StatusHandler = Callable[[bool, str], None]


class EventStream:
    """The `/api/v1/events` WebSocket, reconnecting by itself with jittered backoff.

    `on_event(topic, data)` is called for every event (the stream asks for batched frames: one
    JSON array of events per frame); `on_status(connected, reason)` on every change of
    connectivity. Subscriptions (`metrics:<id>`, `log:<id>:<name>`) are remembered and
    sent again after each reconnect. `run()` returns only when `stop()` is called.
    """

    def __init__(
        self,
        client: Client,
        on_event: EventHandler | None = None,
        on_status: StatusHandler | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        batch: bool = True,
    ) -> None:
        self.client = client
        self.batch = batch
        self.on_event = on_event or (lambda topic, data: None)
        self.on_status = on_status or (lambda connected, reason: None)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.keys: set[str] = set()
        self.connected = False
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # ends the wait between two tries: stop, or try now
        self.on_connect: Callable[[], Awaitable[None]] | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        base = self.client.base_url
        scheme = "wss://" if base.startswith("https://") else "ws://"
        return scheme + base.split("://", 1)[1] + API + "/events"

    async def subscribe(self, keys: Iterable[str]) -> None:
        new = set(keys) - self.keys
        self.keys |= new
        if new:
            await self._send({"subscribe": sorted(new)})

    async def unsubscribe(self, keys: Iterable[str]) -> None:
        gone = set(keys) & self.keys
        self.keys -= gone
        if gone:
            await self._send({"unsubscribe": sorted(gone)})

    async def _send(self, msg: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps(msg))

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    def retry_now(self) -> None:
        """Between two tries: try again now (the master is known to be back)."""
        self._wake.set()

    async def run(self) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            reason = ""
            try:
                async with websockets.connect(
                    self.url,
                    additional_headers=self.client._headers(),
                    ssl=_ws_ssl(self.client),
                    open_timeout=10,
                    max_size=16 << 20,
                ) as ws:
                    self._ws = ws
                    if self.batch:  # a JSON array of events per frame: far cheaper at volume
                        await ws.send(json.dumps({"batch": True}))
                    if self.keys:
                        await ws.send(json.dumps({"subscribe": sorted(self.keys)}))
                    self.connected = True
                    backoff = self.min_backoff
                    self.on_status(True, "")
                    if self.on_connect is not None:
                        await self.on_connect()
                    async for raw in ws:
                        self._dispatch(raw)
                    reason = _close_reason(ws)
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                reason = _describe(exc)
            finally:
                self._ws = None
            if self._stopping.is_set():
                break
            if self.connected:
                self.connected = False
                self.reconnects += 1
            self.on_status(False, reason or "the event stream closed")
            delay = backoff * (0.75 + random.random() / 2)
            backoff = min(self.max_backoff, backoff * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if not self._stopping.is_set() and self._wake.is_set():
                backoff = self.min_backoff
            self._wake.clear()
        if self.connected:
            self.connected = False
            self.on_status(False, "stopped")

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("ignored a malformed event: %.120r", raw)
            return
        on_event = self.on_event
        for event in msg if type(msg) is list else (msg,):
            try:
                topic, data = event["topic"], event["data"]
            except (KeyError, TypeError):
                log.warning("ignored a malformed event: %.120r", event)
                continue
            if type(data) is dict:
                on_event(str(topic), data)


def _ws_ssl(client: Client) -> ssl.SSLContext | None:
    return ssl_context(client.verify) if client.base_url.startswith("https://") else None


def _close_reason(ws: ClientConnection) -> str:
    code = ws.close_code
    text = ws.close_reason or ""
    if code == 4401:
        return "the master refused the event stream: log in again"
    if code == 1013:
        return "the master cut the event stream (this console was too slow)"
    if code in (1001, 1006, None):
        return "the master went away"
    return f"the event stream closed ({code} {text})".strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, websockets.InvalidStatus):
        return f"the master refused the event stream ({exc.response.status_code})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
