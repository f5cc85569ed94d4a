"""Composition root: `create_app(settings)` wires the services into a FastAPI application."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI

from master.api import (
    agent,
    alerts,
    audit,
    auth,
    backups,
    debug,
    events,
    health,
    instances,
    logs,
    masters,
    monitoring,
    nodes,
    operations,
    packages,
    releases,
    systems,
)
from master.api.body_limits import BodyLimitMiddleware
from master.api.errors import install as install_error_handlers
from master.api.middleware import AgentSocketShortcut, AuditMiddleware, GateMiddleware
from master.api.query import refuse_unknown_query
from master.config import Settings
from master.services.wiring import Services
from protocol import __version__

__all__ = ["Services", "create_app"]  # Services is still imported from here by older callers

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    svc = Services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        log.info("GDOS master %s ready on %s", __version__, settings.base_url)
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="GDOS master",
        version=__version__,
        description="Run the services of a fleet: packages, systems, instances, nodes.",
        lifespan=lifespan,
        strict_content_type=False,  # `curl -d '{...}'` without a JSON content type still works
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.services = svc
    install_error_handlers(app)
    for module in (
        health,
        auth,
        agent,
        nodes,
        masters,
        packages,
        systems,
        instances,
        operations,
        releases,
        audit,
        events,
        monitoring,
        alerts,
    ):
        app.include_router(module.router)
    app.include_router(backups.router)
    app.include_router(logs.router)
    if settings.debug_endpoints:
        app.include_router(debug.router)
    # The gate sits inside the audit: a request held during a restore is still audited.
    app.add_middleware(GateMiddleware, gate=svc.gate)
    app.add_middleware(AuditMiddleware, db=svc.db, hub=svc.hub)
    # Outermost for HTTP: a body over the limit is refused before it is audited, authenticated
    # or routed.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout=settings.body_timeout,
        streamed=packages.streams_its_body,
    )
    # Agents' sockets skip the layers above, which pass WebSockets through (one gate check).
    app.add_middleware(
        AgentSocketShortcut, gate=svc.gate, handler=partial(agent.agent_socket, svc=svc)
    )
    return app
