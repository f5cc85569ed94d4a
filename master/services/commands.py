"""Commands to an agent about one instance, sent in the background; a failure the agent did
not report itself lands on the instance (`last_error`, and a state that says it failed)."""

import logging

from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database
from master.services import instance_settings, ownership
from master.services.agents import AgentLink
from master.services.instance_feed import InstanceFeed
from master.services.serializers import instance_out
from master.storage.base import PackageStore
from protocol.errors import ErrorCode, GdosError
from protocol.messages import (
    Batch,
    Deploy,
    Destroy,
    InstanceSpec,
    PackageRef,
    Prepare,
    Result,
    Settings,
    Start,
    Stop,
    Switch,
)
from protocol.states import InstanceState

log = logging.getLogger(__name__)

DEPLOY_TIMEOUT = 3600.0
PRESIGNED_TTL = 3600.0  # an agent starts its download within seconds; an hour is ample
COMMAND_SLACK = 30.0
START_TIMEOUT = COMMAND_SLACK * 4  # reaching `running`, health checks aside
DESTROY_EXTRA = 60.0  # a destroy stops the process, then removes its files


def package_ref(pkg: models.Package) -> PackageRef:
    return PackageRef(
        id=pkg.id,
        name=pkg.name,
        version=pkg.version,
        sha256=pkg.sha256,
        size=pkg.size,
        url=f"/api/v1/packages/{pkg.id}/download",
    )


def spec_for(s: Session, inst: models.Instance) -> InstanceSpec:
    """What a deploy sends; recorded on the instance as what it runs with (`applied`)."""
    pkg = s.get(models.Package, inst.package_id) if inst.package_id else None
    if pkg is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"the package of instance {inst.name} is gone")
    settings = start_settings(s, inst)
    assert settings is not None, "only a module's instances are deployed"
    return InstanceSpec(
        instance_id=inst.id,
        name=inst.name,
        package=package_ref(pkg),
        env=settings.env,
        args=settings.args,
        index=settings.index,
        user=settings.user,
    )


def start_settings(
    s: Session, inst: models.Instance, modules: dict[str, models.Module] | None = None
) -> Settings | None:
    """The settings a start (or deploy, or switch) carries to a module's instance, recorded as
    applied and its drift refreshed (not committed); None for an adopted process, whose
    command is its own. `modules` saves a query per instance on a batch."""
    if inst.adopted or inst.module_id is None:
        return None
    mod = modules.get(inst.module_id) if modules is not None else None
    mod = mod or s.get(models.Module, inst.module_id)
    settings = instance_settings.settings_for(mod, inst)
    inst.applied = instance_settings.applied(inst.package_id, settings)
    instance_settings.refresh_drift(s, [inst])
    return settings


def stop_timeout(s: Session, inst: models.Instance) -> float:
    """How long a stop may take: the package's (or adoption's) `stop_timeout` and some slack."""
    pkg = s.get(models.Package, inst.package_id) if inst.package_id else None
    source = pkg.manifest if pkg else (inst.adoption or {})
    return float(source.get("stop_timeout", 10)) + COMMAND_SLACK


class Commands:
    def __init__(self, db: Database, feed: InstanceFeed) -> None:
        self.db = db
        self.feed = feed
        self.store: PackageStore | None = None  # set at startup
        # Restarts whose stop got no answer (the node went away mid-stop): its next hello starts
        # them if the agent found the process gone, instead of leaving them exited.
        self.interrupted_restarts: set[str] = set()

    async def presigned_ref(self, ref: PackageRef) -> PackageRef:
        """With an object store, agents fetch straight from the bucket (the master stays out of
        the data path); the agent still checks sha256 before unpacking."""
        url = await self.store.presigned_url(ref.sha256, PRESIGNED_TTL) if self.store else None
        if url is None:
            return ref
        return ref.replace(url=url, needs_auth=False)

    async def deploy(self, link: AgentLink, spec: InstanceSpec) -> None:
        assert spec.package is not None, "only packaged instances are deployed"
        try:
            package = await self.presigned_ref(spec.package)
        except GdosError as exc:
            self.note_failure(spec.instance_id, exc.message)
            return
        spec = spec.replace(package=package)
        msg = Deploy(id=link.next_id(), spec=spec)
        await self.send(link, msg, spec.instance_id, DEPLOY_TIMEOUT)

    async def send(
        self,
        link: AgentLink,
        msg: Deploy | Start | Stop | Destroy | Batch | Prepare | Switch,
        instance_id: str,
        timeout: float,
    ) -> Result | None:
        """Send one command; a failure the agent did not report itself lands on the instance."""
        try:
            result = await link.request(msg, timeout)
        except GdosError as exc:
            log.warning("%s %s on %s: %s", msg.type, instance_id, link.node_id, exc.message)
            self.note_failure(instance_id, exc.message, link=link)
            return None
        if not result.ok:
            err = result.error.message if result.error else f"{msg.type} failed"
            self.note_failure(instance_id, err, result.data.get("state"), link)
        return result

    async def restart(
        self, link: AgentLink, instance_id: str, stop_timeout: float, settings: Settings | None
    ) -> None:
        """Stop, then start (with the instance's settings) once the stop succeeded."""
        stopped = await self.send(
            link, Stop(id=link.next_id(), instance_id=instance_id), instance_id, stop_timeout
        )
        if stopped is None:
            self.interrupted_restarts.add(instance_id)
            return
        if not stopped.ok:
            return
        start = Start(id=link.next_id(), instance_id=instance_id, settings=settings)
        await self.send(link, start, instance_id, START_TIMEOUT)

    async def destroy(self, link: AgentLink, instance_id: str, timeout: float) -> None:
        """Destroy on the node; the master forgets the instance once the agent has."""
        msg = Destroy(id=link.next_id(), instance_id=instance_id)
        result = await self.send(link, msg, instance_id, timeout)
        if result is not None and result.ok:
            with self.db.session() as s:
                inst = s.get(models.Instance, instance_id)
                if inst is not None:
                    self.forget(s, inst)

    def note_failure(
        self,
        instance_id: str,
        message: str,
        state: str | None = None,
        link: AgentLink | None = None,
    ) -> None:
        """`link`: the command went down it; its failure is not written once the node said
        hello since (that hello applied the desired state, and may have sent it again)."""
        with self.db.session() as s:
            if link is not None and not _news(s, link):
                log.info("%s on %s: not noted, the node reconnected since", message, link.node_id)
                return
            inst = s.get(models.Instance, instance_id)
            if inst is None:
                return
            inst.last_error = message
            if state:
                inst.state = state
            elif inst.state in (InstanceState.DEPLOYING, InstanceState.STARTING):
                inst.state = InstanceState.FAILED
            elif inst.state == InstanceState.STOPPING:
                inst.state = InstanceState.UNKNOWN
            s.commit()
            self.feed.publish(inst)

    def forget(self, s: Session, inst: models.Instance) -> None:
        out = instance_out(inst).model_copy(update={"state": "destroyed"})
        s.delete(inst)
        s.commit()
        self.feed.publish_gone(out)


def _news(s: Session, link: AgentLink) -> bool:
    """Is a failure on `link` still news: the node's epoch is still the link's? The node's row
    stays locked (PostgreSQL) until the write, so a hello claiming it comes after."""
    if link.epoch is None:
        return True
    pinned = ownership.pin(s.connection(), link.node_id)
    return pinned is None or pinned == link.epoch
