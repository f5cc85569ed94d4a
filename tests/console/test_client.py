"""console.client against a real master (and a tus fake at the HTTP seam for resumption)."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import importlib.util
import os
import re
from pathlib import Path

import httpx
import pytest

from console.client import Client, ClientError, EventStream
from protocol import selfcheck
from tests.console.conftest import until
from tests.support import ADMIN_PASSWORD, Master, build_package, free_port


@pytest.fixture
async def client(shared_master):
    c = Client(shared_master.url)
    await c.login("admin", ADMIN_PASSWORD)
    yield c
    await c.close()


def test_the_client_never_imports_qt():
    """Scripts and gdosctl use the client without a display: nothing it reaches imports Qt."""
    reached = selfcheck.reachable_modules("console.client")
    assert "console.client.events" in reached and "protocol.rest" in reached
    assert not [m for m in reached if m.startswith("console.") and "client" not in m]
    for name in reached:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        for node in ast.walk(ast.parse(Path(spec.origin).read_bytes())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                assert not [n for n in names if n.startswith(("PySide6", "shiboken6"))], name


async def test_wrong_password_is_a_clear_error(shared_master):
    async with Client(shared_master.url) as c:
        with pytest.raises(ClientError) as err:
            await c.login("admin", "not-the-password")
    assert err.value.status == 401
    assert err.value.code == "invalid_credentials"
    assert "wrong username or password" in str(err.value)
    assert c.token is None


async def test_unreachable_master(tmp_path):
    async with Client(f"http://127.0.0.1:{free_port()}") as c:
        with pytest.raises(ClientError) as err:
            await c.nodes()
    assert err.value.unreachable
    assert "cannot reach the master" in err.value.message


async def test_missing_endpoint_differs_from_unknown_id(client):
    with pytest.raises(ClientError) as missing:
        await client.request("GET", "/no-such-endpoint")
    assert missing.value.endpoint_missing
    with pytest.raises(ClientError) as unknown:
        await client.system("no-such-system")
    assert unknown.value.status == 404 and not unknown.value.endpoint_missing
    assert "no system no-such-system" in unknown.value.message


async def test_systems_modules_and_conflicts(client, tmp_path):
    await client.upload_package(build_package(tmp_path, name="clientpkg"))
    system = await client.create_system("client-sys", "made by a test")
    with pytest.raises(ClientError) as dup:
        await client.create_system("client-sys")
    assert dup.value.status == 409 and "exists" in dup.value.message
    mod = await client.create_module(system.id, "web", "clientpkg", start_order=2)
    detail = await client.system(system.id)
    assert [m.name for m in detail.modules] == ["web"] and detail.modules[0].start_order == 2
    with pytest.raises(ClientError) as bad:
        await client.create_module(system.id, "db", "no-such-package")
    assert bad.value.status == 404
    assert [m.id for m in (await client.system(system.id)).modules] == [mod.id]
    await client.delete_module(mod.id)
    await client.delete_system(system.id)
    assert system.id not in [s.id for s in await client.systems()]


async def test_upload_reports_progress_and_rejects_bad_zip(client, tmp_path):
    pkg_path = build_package(
        tmp_path, name="progresspkg", files={"blob.bin": os.urandom(3_000_000)}
    )
    seen: list[tuple[int, int]] = []
    pkg = await client.upload_package(pkg_path, lambda sent, total: seen.append((sent, total)))
    size = pkg_path.stat().st_size
    assert pkg.name == "progresspkg" and pkg.size == size
    assert pkg.sha256 == hashlib.sha256(pkg_path.read_bytes()).hexdigest()
    assert seen[-1] == (size, size) and len(seen) >= 1
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ClientError) as err:
        await client.upload_package(bad)
    assert err.value.status == 422
    assert "progresspkg" in [p.name for p in await client.packages()]
    assert "bad" not in [p.name for p in await client.packages()]


async def test_audit_and_csv(client):
    rows = await client.audit(limit=5)
    assert rows and rows[0].actor
    text = await client.audit_csv(limit=5)
    assert text.splitlines()[0].startswith("ts,actor,action")


async def test_event_stream_reconnects_after_master_restart(tmp_path):
    port = free_port()
    master = Master(tmp_path / "m", port=port).launch()
    statuses: list[tuple[bool, str]] = []
    events: list[tuple[str, dict]] = []
    c = Client(master.url)
    await c.login("admin", ADMIN_PASSWORD)
    stream = EventStream(
        c,
        lambda t, d: events.append((t, d)),
        lambda ok, why: statuses.append((ok, why)),
        max_backoff=1.0,
    )
    task = asyncio.ensure_future(stream.run())
    try:
        await until(lambda: stream.connected, what="stream connected")
        await c.create_system("before")
        await until(lambda: any(t == "system" and d.get("name") == "before" for t, d in events))
        master.stop()
        await until(lambda: statuses and statuses[-1][0] is False, what="disconnect seen")
        assert statuses[-1][1]  # a reason in words
        master.launch()
        await until(lambda: stream.connected, timeout=60, what="reconnected")
        assert stream.reconnects == 1
        await c.create_system("after")
        await until(lambda: any(t == "system" and d.get("name") == "after" for t, d in events))
    finally:
        stream.stop()
        await asyncio.wait_for(task, 10)
        await c.close()
        master.stop()


class TusFake:
    """A tus 1.0 server in memory that drops the connection on chosen PATCH calls."""

    def __init__(self, drop_on: set[int]) -> None:
        self.data = bytearray()
        self.length = 0
        self.patches = 0
        self.drop_on = drop_on

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "OPTIONS":
            return httpx.Response(204, headers={"Tus-Version": "1.0.0", "Tus-Resumable": "1.0.0"})
        if request.method == "POST" and path.endswith("/uploads"):
            self.length = int(request.headers["Upload-Length"])
            return httpx.Response(201, headers={"Location": "/api/v1/packages/uploads/u1"})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Upload-Offset": str(len(self.data))})
        if request.method == "PATCH":
            self.patches += 1
            if int(request.headers["Upload-Offset"]) != len(self.data):
                return httpx.Response(
                    409, json={"error": {"code": "conflict", "message": "wrong offset"}}
                )
            body = request.read()
            if self.patches in self.drop_on:
                self.data += body[: len(body) // 2]  # half arrived, then the line went down
                raise httpx.ReadError("connection reset by peer")
            self.data += body
            return httpx.Response(204, headers={"Upload-Offset": str(len(self.data))})
        if request.method == "GET" and re.search(r"/uploads/u1$", path):
            return httpx.Response(
                200,
                json={
                    "id": "p1",
                    "name": "big",
                    "version": "1",
                    "description": "",
                    "os": None,
                    "sha256": hashlib.sha256(self.data).hexdigest(),
                    "size": len(self.data),
                    "uploaded_at": "2026-01-01T00:00:00Z",
                    "manifest": {},
                },
            )
        return httpx.Response(
            404, json={"error": {"code": "not_found", "message": "no such endpoint"}}
        )


async def test_tus_upload_survives_dropped_connections(tmp_path):
    blob = tmp_path / "big.zip"
    payload = bytes(range(256)) * 20_000  # 5 MB
    blob.write_bytes(payload)
    fake = TusFake(drop_on={2, 4})
    created: list[str] = []
    async with Client("http://master.test", token="t", transport=httpx.MockTransport(fake)) as c:
        assert await c.tus_available()
        pkg = await c.tus_upload(blob, chunk_size=1_000_000, on_created=created.append)
    assert created == ["/api/v1/packages/uploads/u1"]
    assert bytes(fake.data) == payload
    assert pkg.sha256 == hashlib.sha256(payload).hexdigest()
    assert fake.patches >= 7  # 5 chunks + 2 cut ones resumed from HEAD's offset


async def test_a_stream_stopped_while_it_opens_ends_once_open():
    """`stop()` while the WebSocket is opening (reconnecting): `run()` ends once it is open,
    not when the master next closes the stream (`gdosctl logs -f` outlived its Ctrl-C)."""
    from websockets.asyncio.server import ServerConnection, serve

    opening = asyncio.Event()

    async def slow_opening(connection: ServerConnection, request: object) -> None:
        opening.set()
        await asyncio.sleep(0.5)

    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()  # says nothing and never closes the stream itself

    async with serve(silent, "127.0.0.1", 0, process_request=slow_opening) as server:
        port = server.sockets[0].getsockname()[1]
        c = Client(f"http://127.0.0.1:{port}")
        stream = EventStream(c)
        task = asyncio.ensure_future(stream.run())
        try:
            await asyncio.wait_for(opening.wait(), 10)
            stream.stop()
            await asyncio.wait_for(asyncio.shield(task), 10)
            assert not stream.connected
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await c.close()
