"""Releases on the master: the two agent commands that change what an instance runs (`prepare`
beside the running release, then `switch`), what a switch records on the instance (its
version, the one before, what it now runs with), the upgrade of one instance, and the history
of a module's rollouts and rollbacks."""

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database, lock_row
from master.services import instance_settings
from master.services.agents import AgentRegistry
from master.services.commands import DEPLOY_TIMEOUT, START_TIMEOUT, package_ref, stop_timeout
from master.services.operation_steps import OpState, Step
from master.services.orchestrator import Orchestrator
from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest
from protocol.messages import Prepare, Settings, Switch
from protocol.rest import iso
from protocol.rest_releases import ReleaseInstance, ReleaseOut
from protocol.states import BUSY_STATES, DesiredState

log = logging.getLogger(__name__)

RELEASE_KINDS = ("rollout", "rollback")


class Releases:
    def __init__(self, db: Database, orchestrator: Orchestrator, agents: AgentRegistry) -> None:
        self.db = db
        self.orch = orchestrator
        self.agents = agents

    # -- the two commands -------------------------------------------------------------------

    async def prepare(self, node_id: str, instance_id: str, package_id: str) -> str | None:
        """Have the node fetch and unpack the package beside the running release; the error
        (None: prepared; a kept release is not fetched again)."""
        link = self.agents.reach(node_id)
        if link is None:
            return f"node {node_id} is offline"
        with self.db.session() as s:
            pkg = s.get(models.Package, package_id)
            if pkg is None:
                return f"package {package_id} was deleted"
            ref = package_ref(pkg)
        try:
            ref = await self.orch.commands.presigned_ref(ref)
            msg = Prepare(id=link.next_id(), instance_id=instance_id, package=ref)
            result = await link.request(msg, DEPLOY_TIMEOUT)
        except GdosError as exc:
            return exc.message
        if not result.ok:
            if result.error is None:
                return "prepare failed"
            # The code too: `storage_full` tells an operator what to do at a glance.
            return f"{result.error.message} ({result.error.code})"
        return None

    async def switch(
        self, node_id: str, instance_id: str, package_id: str, start: bool
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Stop, switch to the prepared release and (when `start`) start, carrying the
        instance's settings; recorded on the instance when it is done. (the agent's report of
        the instance, None) or (None, why it failed)."""
        link = self.agents.reach(node_id)
        if link is None:
            return None, f"node {node_id} is offline"
        with self.db.session() as s:
            inst = s.get(models.Instance, instance_id)
            pkg = s.get(models.Package, package_id)
            if inst is None or pkg is None:
                return None, f"instance {instance_id} or its package is gone"
            mod = s.get(models.Module, inst.module_id) if inst.module_id else None
            settings = instance_settings.settings_for(mod, inst)
            ref = package_ref(pkg)
            timeout = stop_timeout(s, inst) + START_TIMEOUT
        msg = Switch(
            id=link.next_id(), instance_id=instance_id, package=ref, start=start, settings=settings
        )
        try:
            result = await link.request(msg, timeout)
        except GdosError as exc:
            return None, exc.message
        report = result.data.get("report")
        if not result.ok:
            why = result.error.message if result.error else "switch failed"
            # A switch that happened but whose start failed still moved the instance.
            if isinstance(report, dict) and report.get("version") == pkg.version:
                self.record_switch(instance_id, package_id, settings)
            return None, why
        self.record_switch(instance_id, package_id, settings)
        return report if isinstance(report, dict) else {}, None

    def record_switch(self, instance_id: str, package_id: str, settings: Settings) -> None:
        with self.db.session() as s:
            inst = s.get(models.Instance, instance_id)
            pkg = s.get(models.Package, package_id)
            if inst is None or pkg is None:
                return
            if inst.package_id != pkg.id:
                # By its package: the agent's reports may have brought the new version already.
                old = s.get(models.Package, inst.package_id) if inst.package_id else None
                inst.previous_version = old.version if old else inst.version
                inst.previous_package_id = inst.package_id
                inst.package_id, inst.version = pkg.id, pkg.version
            inst.applied = instance_settings.applied(pkg.id, settings)
            instance_settings.refresh_drift(s, [inst])
            s.commit()
            self.orch.feed.publish(inst)

    # -- one instance -------------------------------------------------------------------------

    def upgrade(self, s: Session, inst: models.Instance, version: str | None) -> models.Instance:
        """Prepare beside the running release, then stop -> switch -> start (a stopped instance
        only switches). Checked before anything moves; the rest runs in the background and a
        failure lands on the instance (`last_error`)."""
        lock_row(s, inst)  # the state checked is the state changed, whichever master asks
        mod = s.get(models.Module, inst.module_id) if inst.module_id else None
        if inst.adopted or mod is None:
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"{inst.name} was adopted, not deployed: GDOS does not change what it runs",
                {"instance_id": inst.id},
            )
        if inst.state in BUSY_STATES:
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"instance {inst.name} is {inst.state}; wait until that finishes",
                {"state": inst.state},
            )
        if version is None:
            pkg = instance_settings.desired_package(s, mod)
            if pkg is None:
                raise GdosError(ErrorCode.NOT_FOUND, f"no package {mod.package_name} is uploaded")
        else:
            pkg = self.orch.resolve_package(s, mod.package_name, version)
        node = s.get(models.Node, inst.node_id)
        check_os(pkg, [node] if node else [])
        self.agents.require(inst.node_id)
        inst.last_error = None
        s.commit()
        self.orch.feed.publish(inst)
        start = inst.desired_state == DesiredState.RUNNING
        self.orch.spawn(self._upgrade(inst.node_id, inst.id, pkg.id, start))
        log.info("upgrade of %s to %s %s", inst.name, pkg.name, pkg.version)
        return inst

    async def _upgrade(self, node_id: str, instance_id: str, package_id: str, start: bool) -> None:
        error = await self.prepare(node_id, instance_id, package_id)
        if error is None:
            _, error = await self.switch(node_id, instance_id, package_id, start)
        if error is not None:
            log.warning("upgrade of %s failed: %s", instance_id, error)
            self.orch.commands.note_failure(instance_id, f"upgrade failed: {error}")

    # -- history -------------------------------------------------------------------------------

    def history(self, s: Session, mod: models.Module, limit: int = 100) -> list[ReleaseOut]:
        """The module's rollouts and rollbacks (its own, and a system's that moved it), newest
        first, with what each did to each of its instances."""
        rows = s.scalars(
            select(models.Operation)
            .where(
                models.Operation.system_id == mod.system_id,
                models.Operation.kind.in_(RELEASE_KINDS),
            )
            .order_by(models.Operation.created_at.desc())
        )
        out = []
        for row in rows:
            moved = ((row.rollout or {}).get("modules") or {}).get(mod.id)
            if moved is None:
                continue
            steps = [Step.from_record(r) for r in row.steps or []]
            out.append(
                ReleaseOut(
                    operation_id=row.id,
                    kind=row.kind,
                    module_id=mod.id,
                    from_version=moved.get("from"),
                    to_version=moved.get("to"),
                    actor=row.actor,
                    started_at=iso(row.created_at),
                    finished_at=iso(row.finished_at),
                    state=row.state,
                    error=row.error,
                    instances=[
                        ReleaseInstance(
                            instance_id=st.instance_id,
                            name=st.name,
                            node_id=st.node_id,
                            from_=st.from_version,
                            to=st.to_version,
                            state=str(st.state),
                            error=st.error,
                        )
                        for st in steps
                        if st.module_id == mod.id
                    ],
                )
            )
            if len(out) >= limit:
                break
        return out

    def previous_version(self, s: Session, mod: models.Module) -> str | None:
        """What a rollback returns to: the version the module left in its last successful
        rollout or rollback, else the one its instances ran before."""
        for release in self.history(s, mod):
            if release.state == OpState.SUCCEEDED and release.from_version:
                return release.from_version
        previous = s.scalars(
            select(models.Instance.previous_version).where(
                models.Instance.module_id == mod.id,
                models.Instance.previous_version.is_not(None),
            )
        ).first()
        return previous


def check_os(pkg: models.Package, nodes: list[models.Node]) -> None:
    """A package for another OS is refused before anything moves (422)."""
    manifest = Manifest.from_data(pkg.manifest)
    for node in nodes:
        if manifest.os and node.os and manifest.os != node.os:
            raise GdosError(
                ErrorCode.OS_MISMATCH,
                f"package {pkg.name} {pkg.version} is for {manifest.os}; node "
                f"{node.hostname} runs {node.os}",
                {"node_id": node.id},
            )
