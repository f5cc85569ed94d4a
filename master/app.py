"""Composition root: `create_app(settings)` wires the services into a FastAPI application."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from master.api import (
    agent,
    audit,
    auth,
    backups,
    events,
    health,
    instances,
    logs,
    nodes,
    operations,
    packages,
    systems,
)
from master.api.errors import install as install_error_handlers
from master.config import Settings
from master.db import models
from master.db.session import Database
from master.hub import Hub
from master.services import accounts
from master.services.agents import AgentLink, AgentRegistry, watch_liveness
from master.services.audit import AuditMiddleware
from master.services.backups import BackupService
from master.services.logs import LogRelay
from master.services.operations import Operations
from master.services.orchestrator import Orchestrator
from master.services.restore import Gate, GateMiddleware
from master.services.throttle import LoginThrottle
from master.services.uploads import UploadService
from master.services.views import node_out
from master.storage import PackageStore, open_store
from protocol import __version__
from protocol.messages import CLOSE_POLICY

log = logging.getLogger(__name__)


class Services:
    """Everything a request handler may need, built once per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.hub = Hub()
        self.agents = AgentRegistry()
        self.orchestrator = Orchestrator(self.db, self.agents, self.hub, settings)
        self.login_throttle = LoginThrottle()
        self.gate = Gate()
        self.backups = BackupService(settings, self.db)
        self.logs = LogRelay(self.db, self.agents, self.hub)
        self.backups.restore_hooks.append(self.logs.reset)
        self.operations = Operations(self.db, self.orchestrator, self.agents, self.hub)
        self._store: PackageStore | None = None
        self._uploads: UploadService | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def store(self) -> PackageStore:
        assert self._store is not None, "the package store opens at startup"
        return self._store

    @property
    def uploads(self) -> UploadService:
        assert self._uploads is not None, "resumable uploads open at startup"
        return self._uploads

    async def start(self) -> None:
        if self.db.is_sqlite:
            self.settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        self.db.migrate()
        with self.db.session() as s:
            accounts.bootstrap(s, self.settings)
        self._store = await open_store(self.settings)
        self.orchestrator.store = self._store
        self._uploads = UploadService(self.db, self._store, self.settings)
        self._tasks.append(asyncio.create_task(self._uploads.expire_forever()))
        # No agent is connected yet: what their processes do is unknown until they say hello.
        self.orchestrator.mark_node_unknown(None)
        self.operations.resume_all()  # they wait for their nodes' hello
        self._tasks.append(
            asyncio.create_task(
                watch_liveness(self.agents, self.settings.heartbeat_grace, self._drop_stale)
            )
        )
        if not self.db.is_sqlite:
            log.info("scheduled backups are off: back up this database with its own tools")
        elif self.settings.backup_interval > 0:
            self.backups.clean_partials()
            self._tasks.append(
                asyncio.create_task(
                    self.backups.run_schedule(
                        self.settings.backup_interval, self.settings.backup_keep
                    )
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in list(self.agents.links.values()):
            self.agents.detach(link)
            with contextlib.suppress(Exception):
                await link.channel.close(1001, "master shutting down")
        await self.orchestrator.close()
        await self.logs.close()
        self.db.dispose()

    async def _drop_stale(self, link: AgentLink) -> None:
        if self.agents.detach(link):
            self.node_offline(link)
        with contextlib.suppress(Exception):
            await link.channel.close(CLOSE_POLICY, "heartbeat timeout")

    def publish_node(self, node_id: str) -> None:
        with self.db.session() as s:
            node = s.get(models.Node, node_id)
            if node is not None:
                self.hub.publish("node", node_out(node, self.agents).model_dump())

    def publish_node_load(self, link: AgentLink) -> None:
        self.hub.publish(
            "node", {"id": link.node_id, "status": "online", "load": link.load.model_dump()}
        )

    def node_offline(self, link: AgentLink) -> None:
        with self.db.session() as s:
            node = s.get(models.Node, link.node_id)
            if node is not None:
                node.last_seen = link.last_seen_wall
                s.commit()
        self.orchestrator.mark_node_unknown(link.node_id)
        self.publish_node(link.node_id)


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
    )
    app.state.services = svc
    install_error_handlers(app)
    for module in (
        health,
        auth,
        agent,
        nodes,
        packages,
        systems,
        instances,
        operations,
        audit,
        events,
    ):
        app.include_router(module.router)
    app.include_router(backups.router)
    app.include_router(logs.router)
    # The gate sits inside the audit: a request held during a restore is still audited.
    app.add_middleware(GateMiddleware, gate=svc.gate)
    app.add_middleware(AuditMiddleware, db=svc.db)
    return app
