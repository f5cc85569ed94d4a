"""Composition root: `create_app(settings)` wires the services into a FastAPI application."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from master.api import (
    agent,
    alerts,
    audit,
    auth,
    backups,
    events,
    health,
    instances,
    logs,
    monitoring,
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
from master.services.alerting.engine import AlertEngine
from master.services.alerting.webhooks import Notifier
from master.services.audit import AuditMiddleware
from master.services.backups import BackupService
from master.services.directory import Directory
from master.services.logs import LogRelay
from master.services.metrics import MetricsService, MetricsStore
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

NODE_LOAD_EVERY = (
    5.0  # seconds between broadcast `node` load events per node (full rate: metrics:<id>)
)


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
        # Hub listeners run in this order: the directory first, so the others see fresh facts.
        self.directory = Directory(self.hub)
        store = MetricsStore(
            settings.metrics_recent_seconds,
            settings.metrics_history_minutes,
            settings.metrics_max_series,
        )
        self.metrics = MetricsService(store, self.directory, self.hub)
        self.notifier = Notifier()
        self.alerts = AlertEngine(
            self.db, self.hub, self.directory, self.agents, self.notifier, settings.base_url
        )
        self.metrics.on_samples = self.alerts.observe_samples
        self._load_published: dict[str, float] = {}
        # Caches of database state start over from the restored database.
        self.backups.restore_hooks.append(self._reload_caches)
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
            self.directory.load(s)
            self.alerts.load(s)
        self._store = await open_store(self.settings)
        self.orchestrator.store = self._store
        self._uploads = UploadService(self.db, self._store, self.settings)
        self._tasks.append(asyncio.create_task(self._uploads.expire_forever()))
        await self.notifier.start()
        await self.alerts.start()
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
        await self.alerts.stop()
        await self.notifier.stop()
        self.db.dispose()

    def _reload_caches(self) -> None:
        with self.db.session() as s:
            self.directory.reload(s)
            self.alerts.reload(s)

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
        now = time.monotonic()
        if now - self._load_published.get(link.node_id, 0.0) < NODE_LOAD_EVERY:
            return  # a table refresh every few seconds; charts subscribe to metrics:<node id>
        self._load_published[link.node_id] = now
        self.hub.publish(
            "node", {"id": link.node_id, "status": "online", "load": link.load.to_dict()}
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
        monitoring,
        alerts,
    ):
        app.include_router(module.router)
    app.include_router(backups.router)
    app.include_router(logs.router)
    # The gate sits inside the audit: a request held during a restore is still audited.
    app.add_middleware(GateMiddleware, gate=svc.gate)
    app.add_middleware(AuditMiddleware, db=svc.db, hub=svc.hub)
    return app
