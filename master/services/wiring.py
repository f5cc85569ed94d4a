"""The master's wiring: every service built once, started and stopped in order."""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from master.config import Settings
from master.db.session import Database
from master.hub import Hub
from master.services import accounts, upload_expiry
from master.services.agents import AgentRegistry, watch_liveness
from master.services.alerting.engine import AlertEngine
from master.services.alerting.webhooks import Notifier
from master.services.backups import BackupService
from master.services.bus import Bus
from master.services.cluster_events import ClusterEvents
from master.services.credentials import CredentialLookup
from master.services.directory import Directory
from master.services.leader import LeaderLease
from master.services.leader_jobs import LeaderJobs
from master.services.login_failures import SharedLoginThrottle
from master.services.logs import LogRelay
from master.services.loop_lag import LoopLag
from master.services.masters import Masters
from master.services.metrics import MetricsService, MetricsStore
from master.services.nodes import Nodes
from master.services.operations import Operations
from master.services.orchestrator import Orchestrator
from master.services.peer_secret import PeerSecret
from master.services.releases import Releases
from master.services.remote_commands import RemoteCommands
from master.services.restore import Gate
from master.services.rollouts import Rollouts
from master.services.throttle import LoginThrottle
from master.services.token_cache import TokenCache
from master.services.uploads import UploadService
from master.start_marks import mark
from master.storage import PackageStore, open_store

if TYPE_CHECKING:
    from master.api.deps import Principal
    from master.services.forwarding import Forwarder
    from master.services.shared_uploads import SharedUploads

log = logging.getLogger(__name__)


class Services:
    """Everything a request handler may need, built once per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Set when this master begins to shut down: the agents it disconnects then are not lost.
        self.stopping = False
        self.db = Database(settings.database_url)
        self.hub = Hub()
        self.loop_lag = LoopLag()
        self.agents = AgentRegistry()
        self.credentials = CredentialLookup(self.db)  # of the agents' sockets, a turn at a time
        # API callers verified a moment ago (a master alone on its database only).
        self.principals: TokenCache[Principal] = TokenCache(enabled=self.db.is_sqlite)
        self.masters = Masters(self.db, settings, self.agents)
        # Several masters (PostgreSQL only; a master on SQLite is alone and runs none of it).
        self.bus = Bus(self.db.url, self.db.engine) if self.db.is_postgres else None
        self.remote_commands = (
            RemoteCommands(self.db, self.agents, self.bus) if self.bus is not None else None
        )
        self.cluster_events = (
            ClusterEvents(self.db, self.hub, self.bus, self.agents)
            if self.bus is not None
            else None
        )
        if self.remote_commands is not None:
            self.remote_commands.events = self.cluster_events
        self.orchestrator = Orchestrator(self.db, self.agents, self.hub, settings)
        if self.cluster_events is not None:  # operations follow steps on other masters' nodes
            feed = self.orchestrator.feed
            self.cluster_events.on_remote.setdefault("instance", []).append(feed.remote_view)
        # Several masters share lock-outs through the database; one master keeps them in memory.
        self.login_throttle: LoginThrottle | SharedLoginThrottle = (
            SharedLoginThrottle(self.db) if self.db.is_postgres else LoginThrottle()
        )
        self.leader = LeaderLease(self.db)  # always held on SQLite
        self.gate = Gate()
        self.backups = BackupService(settings, self.db)
        self.logs = LogRelay(self.db, self.agents, self.hub)
        self.peer_secret = PeerSecret(self.db)
        # Live metrics and logs of nodes other masters hold (a master on SQLite is alone).
        self.forwarder: Forwarder | None = None
        if self.db.is_postgres:  # imported only here: a master on SQLite starts sooner
            from master.services.forwarding import Forwarder as PeerForwarder

            self.forwarder = PeerForwarder(self.db, self.hub, self.agents, self.peer_secret)
        self.backups.restore_hooks.append(self.logs.reset)
        self.operations = Operations(self.db, self.orchestrator, self.agents, self.hub)
        self.releases = Releases(self.db, self.orchestrator, self.agents)
        self.rollouts = Rollouts(
            self.db, self.orchestrator, self.agents, self.operations, self.releases
        )
        self.nodes = Nodes(self.db, self.hub, self.agents, self.orchestrator)
        self.leader_jobs = LeaderJobs(
            self.db, self.leader, self.masters, self.nodes, self.operations, self.rollouts
        )
        # Hub listeners run in this order: the directory first, so the others see fresh facts.
        self.directory = Directory(self.hub)
        store = MetricsStore(
            settings.metrics_recent_seconds,
            settings.metrics_history_minutes,
            settings.metrics_max_series,
        )
        self.metrics = MetricsService(store, self.directory, self.hub)
        if self.db.is_postgres:  # instances another master made are learnt at the node's hello
            self.orchestrator.hellos.on_rows = self.directory.learn
        self.notifier = Notifier()
        self.alerts = AlertEngine(
            self.db,
            self.hub,
            self.directory,
            self.agents,
            self.notifier,
            settings.base_url,
            lease=self.leader,
        )
        self.metrics.on_samples = self.alerts.observe_samples
        # Caches of database state start over from the restored database.
        self.backups.restore_hooks.append(self._reload_caches)
        self.backups.restore_hooks.append(self.principals.forget_all)
        self.backups.restore_hooks.append(self.masters.register_again)
        self._store: PackageStore | None = None
        self._uploads: UploadService | SharedUploads | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lease_task: asyncio.Task[None] | None = None

    @property
    def store(self) -> PackageStore:
        assert self._store is not None, "the package store opens at startup"
        return self._store

    @property
    def uploads(self) -> "UploadService | SharedUploads":
        assert self._uploads is not None, "resumable uploads open at startup"
        return self._uploads

    def prepare(self, migrate_apart: bool = False) -> None:
        """Before serving: the schema, and this master's row in the masters table
        (`SeveralMastersRefused` when it must not run beside the masters already online).
        `migrate_apart`: a schema behind is migrated by a child process (`Database.migrate`)."""
        if self.db.is_sqlite:
            self.settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        self.db.migrate(apart=migrate_apart)
        self.masters.register()

    async def start(self) -> None:
        self.prepare()  # done already when started by `gdos-master`
        if self.db.is_sqlite:  # alone: marked before the caches below read the states
            self.orchestrator.mark_all_unknown_unannounced()
        with self.db.session() as s:
            accounts.bootstrap(s, self.settings)
            self.directory.load(s)
            self.alerts.load(s)
        self._tasks.append(asyncio.create_task(self.loop_lag.run()))
        self._store = await open_store(self.settings)
        self.orchestrator.commands.store = self._store
        self._uploads = self._open_uploads(self._store)
        self._tasks.append(asyncio.create_task(self._expire_uploads(self._uploads)))
        await self.notifier.start()
        await self.alerts.start()
        await self._start_bus()
        # No agent is connected yet: what their processes do is unknown until they say hello;
        # but nodes another online master holds are that master's to judge.
        if not self.db.is_sqlite:
            self.orchestrator.mark_node_unknown(None, self.masters.gone)
        if self.db.is_postgres:  # operations name their driver; this master resumes its own
            self.operations.store.master_id = self.masters.id
        self.leader.master_id = self.masters.id
        self.operations.resume_all()  # they wait for their nodes' hello
        self.rollouts.resume_all()
        self._tasks.append(asyncio.create_task(self.masters.run()))
        if self.forwarder is not None:
            self._tasks.append(asyncio.create_task(self.forwarder.run()))
        self._lease_task = asyncio.create_task(self.leader.run())
        self._tasks.append(asyncio.create_task(self.leader_jobs.run()))
        self._tasks.append(
            asyncio.create_task(
                watch_liveness(self.agents, self.settings.heartbeat_grace, self.nodes.drop_stale)
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
        mark("services_started")

    async def _start_bus(self) -> None:
        """Several masters: commands for other masters' nodes and theirs for this one's,
        and every master's broadcast events."""
        remote, events = self.remote_commands, self.cluster_events
        if self.bus is None or remote is None or events is None:
            return
        remote.attach()
        events.attach()
        await self.bus.start()
        self._tasks += [asyncio.create_task(remote.run()), asyncio.create_task(events.run())]

    def _open_uploads(self, store: PackageStore) -> "UploadService | SharedUploads":
        """Uploads in the bucket when several masters may share them (PostgreSQL and S3);
        on the master's disk otherwise, as a single master has always kept them."""
        if self.db.is_sqlite or self.settings.store_type != "minio":
            return UploadService(self.db, store, self.settings)
        from master.services.shared_uploads import SharedUploads
        from master.storage.s3 import S3Store

        assert isinstance(store, S3Store)
        return SharedUploads(self.db, store, self.settings)

    async def _expire_uploads(self, uploads: "UploadService | SharedUploads") -> None:
        if isinstance(uploads, UploadService):
            await upload_expiry.expire_forever(
                uploads, lambda: upload_expiry.expire(uploads), self.leader
            )
            return
        from master.services import shared_upload_expiry

        await upload_expiry.expire_forever(
            uploads, lambda: shared_upload_expiry.expire(uploads), self.leader
        )

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.remote_commands is not None:
            await self.remote_commands.close()
        if self.bus is not None:
            await self.bus.stop()
        for link in list(self.agents.links.values()):
            self.agents.detach(link)
            with contextlib.suppress(Exception):
                await link.channel.close(1001, "master shutting down")
        await self.orchestrator.close()
        await self.logs.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        await self.alerts.stop()
        await self.notifier.stop()
        self.masters.retire()
        # The lease last: once it is free the next leader looks, and finds this master retired
        # (its nodes let go), not dead.
        if self._lease_task is not None:
            self._lease_task.cancel()
            await asyncio.gather(self._lease_task, return_exceptions=True)
        self.db.dispose()

    def _reload_caches(self) -> None:
        with self.db.session() as s:
            self.directory.reload(s)
            self.alerts.reload(s)
