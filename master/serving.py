"""The master's application served on sockets `gdos-master` opened (master/listen.py)."""

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import uvicorn

from master.app import create_app
from master.config import Settings
from master.heap import frozen_count, settle_heap, trim_periodically
from master.liveness import LivenessResponder
from master.local_agent import LocalAgent, agent_command
from master.server import (
    NotifyingServer,
    guarded_protocol,
    paced_websocket_protocol,
)
from master.services.masters import SeveralMastersRefused
from master.start_marks import mark
from master.storage import open_store
from protocol import __version__


def print_banner(settings: Settings, with_agent: bool) -> None:
    pw = settings.admin_password_file
    lines = [
        f"GDOS master {__version__} listening on {settings.base_url}",
        f"  data directory : {settings.data_dir}",
        f"  admin password : {pw if pw.exists() else '(given with --admin-password)'}",
        f"  join token     : {settings.join_token_file}",
    ]
    if with_agent:
        lines.append(f"  local agent    : work dir {settings.data_dir / 'agent'}")
    lines.append("  stop with Ctrl-C (services keep running and are re-adopted at the next start)")
    print("\n".join(lines), flush=True)


async def warm_worker_threads() -> None:
    """anyio imports its asyncio backend at the first call for a worker thread (an API call's
    credential check, the node listing) and starts the thread then: after a restart that held
    the loop 15-25 ms in the middle of the reconnect storm. Done before anything is served."""
    await anyio.to_thread.run_sync(_nothing)


def _nothing() -> None:
    pass


def build_routes(routes: Sequence[Any]) -> int:
    """Have FastAPI build each included router's routes now, before anything is served: it
    builds them at the first request that reaches them, which after a restart holds the loop
    in the middle of the reconnect storm. Returns the routers built."""
    built = 0
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)  # an included router
        if candidates is None:
            continue
        built += 1 + build_routes(candidates())
        low_priority = getattr(route, "effective_low_priority_routes", None)
        if low_priority is not None:
            low_priority()
    return built


async def serve(settings: Settings, with_agent: bool, sockets: list[socket.socket]) -> int:
    try:
        await open_store(settings)  # a misconfigured bucket: one clear line
    except SystemExit as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    app = create_app(settings)
    mark("app_created")
    try:
        app.state.services.prepare(migrate_apart=True)  # before anything is served
    except SeveralMastersRefused as exc:
        print(f"gdos-master: {exc}", file=sys.stderr, flush=True)
        return 2
    mark("prepared")
    build_routes(app.router.routes)
    mark("routes_built")
    await warm_worker_threads()
    # The start's garbage, collected (and what is left frozen and counted) before the services
    # start: from then on the loop's lag is sampled, and once it serves, the fleet reconnects
    # (master/heap.py).
    frozen = frozen_count()
    config = uvicorn.Config(
        app,
        http=guarded_protocol(),
        ws=paced_websocket_protocol(),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        ws_max_size=8 << 20,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=5,
    )
    services = app.state.services
    server = NotifyingServer(config, on_exit=lambda: setattr(services, "stopping", True))
    # uvicorn re-raises the signal that stopped it once it is done serving; with the default
    # handlers that kills this process before the local agent is stopped below. Handlers that
    # only note the signal let the cleanup run (uvicorn installs its own while serving).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    serving = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        await serving
        return 1
    mark("serving")
    # Several masters: agents ask whether this process runs, answered beside the loop.
    responder = LivenessResponder.beside(sockets) if services.db.is_postgres else None
    # The fleet reconnects now: a burst (master/heap.py).
    settle_heap(collect=False, walked=frozen).hold()
    gc.enable()  # off while the master started (`gdos-master`)
    trimmer = asyncio.create_task(trim_periodically())
    agent: LocalAgent | None = None
    keeper: asyncio.Task[None] | None = None
    print_banner(settings, with_agent)
    if with_agent:
        agent = LocalAgent(agent_command(settings, settings.data_dir / "agent"))
        keeper = asyncio.create_task(agent.run())
    try:
        await serving
    finally:
        trimmer.cancel()
        if responder is not None:
            responder.close()
        if agent is not None and keeper is not None:
            agent.stop()
            await asyncio.gather(keeper, return_exceptions=True)
    return 0
