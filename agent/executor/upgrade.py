"""Changing what an instance runs: a release prepared beside the running one (nothing stops),
a switch to a kept release (stop, point `current` at it, start), and the settings a start
brings. Upgrades, rollouts and rollbacks are the master's sequences of these two commands.

A switch writes the state file first and the pointer second; the agent's start makes the
pointer agree with the state file (`releases.tidy`), so an agent killed anywhere in between
comes back wholly on one release.
"""

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from agent.executor import deploy, releases
from agent.executor.managed import Managed
from agent.executor.releases import Release
from agent.executor.states import ProcessState
from protocol.errors import ErrorCode, GdosError
from protocol.messages import PackageRef, Settings

if TYPE_CHECKING:
    from agent.executor.supervisor import Supervisor

log = logging.getLogger(__name__)

S = ProcessState
RUNNING_STATES = frozenset({S.STARTING, S.RUNNING, S.BACKOFF})  # "it was running"


def apply_settings(m: Managed, settings: Settings | None) -> None:
    """The master's current settings for `m`, used from its next start on (and kept)."""
    if settings is None:
        return
    m.spec = m.spec.replace(
        env=dict(settings.env),
        args=list(settings.args) if settings.args is not None else None,
        index=settings.index,
        user=settings.user,
        group=settings.group,
    )


def _deployed(m: Managed) -> None:
    if m.adopted:
        raise GdosError(
            ErrorCode.INVALID_STATE,
            f"{m.spec.name} was adopted, not deployed: it has no releases to change",
        )
    if m.manifest is None:
        raise GdosError(
            ErrorCode.INVALID_STATE, f"{m.spec.name} is {m.state}: wait until its deploy is done"
        )


async def prepare(sup: "Supervisor", m: Managed, package: PackageRef) -> tuple[Release, bool]:
    """The release of `package`, fetched and unpacked unless it is kept already (then True
    for "fetched" is False). The running release is never touched: a failure (a full disk:
    `storage_full`) leaves the instance as it was."""
    _deployed(m)
    name = releases.release_name(package)
    async with m.prepare_lock:
        inst_dir = sup.instance_dir(m.id)
        kept = m.kept(name)
        if kept is not None and releases.folder(inst_dir, name).is_dir():
            return kept, False
        m.prepare_task = asyncio.current_task()
        try:
            release, _ = await deploy.install(
                sup.downloads.get,
                package,
                inst_dir,
                sup.log_roots,
                functools.partial(sup.account, m.spec),
            )
        finally:
            m.prepare_task = None
        if sup.instances.get(m.id) is not m:
            raise GdosError(ErrorCode.NOT_FOUND, f"{m.spec.name} was destroyed meanwhile")
        m.releases = (*(r for r in m.releases if r.name != name), release)
        await sup.commit(m)
        log.info("prepared %s %s for %s", package.name, package.version, m.spec.name)
        return release, True


async def switch(
    sup: "Supervisor",
    m: Managed,
    package: PackageRef,
    start: bool | None,
    settings: Settings | None,
) -> str | None:
    """Make the kept release of `package` current: stop, switch, start (when `start`, or, when
    None, when it was running). Returns the release current before (None when nothing changed).
    Then releases beyond the manifest's keep_releases are removed, never the current or the
    previous one."""
    _deployed(m)
    name = releases.release_name(package)
    before: str | None = None
    async with m.lock:
        inst_dir = sup.instance_dir(m.id)
        release = m.kept(name)
        if release is None or not releases.folder(inst_dir, name).is_dir():
            raise GdosError(
                ErrorCode.NOT_FOUND,
                f"release {name} of {m.spec.name} is not prepared on this node: prepare it first",
                {"release": name},
            )
        want = m.state in RUNNING_STATES if start is None else start
        apply_settings(m, settings)
        if m.release != name:
            if m.state != S.STOPPED:
                await sup.stop_locked(m)
            before = m.release
            m.previous, m.release = m.release, name
            m.manifest = release.manifest
            m.spec = m.spec.replace(package=release.package)
            m.releases = (*(r for r in m.releases if r.name != name), release)
            await sup.commit(m)  # the state file first: it is the truth the pointer follows
            await asyncio.to_thread(releases.write_pointer, inst_dir, name)
            log.info("%s switched from %s to %s", m.spec.name, before, name)
        if want and m.state not in (S.STARTING, S.RUNNING):
            await sup.start_locked(m)
    if before is not None:
        await prune(sup, m)
    return before


async def prune(sup: "Supervisor", m: Managed) -> None:
    """Remove the releases beyond keep_releases (records first, then folders: a folder left by
    a crash in between is removed at the agent's next start)."""
    if m.manifest is None:
        return
    async with m.prepare_lock:
        protect = {n for n in (m.release, m.previous) if n is not None}
        kept, dropped = releases.prune(m.releases, m.manifest.keep_releases, protect)
        if not dropped:
            return
        m.releases = kept
        await sup.commit()
        inst_dir = sup.instance_dir(m.id)
        for release in dropped:
            await asyncio.to_thread(releases.remove_release, inst_dir, release.name)
        log.info("%s: removed releases %s", m.spec.name, ", ".join(r.name for r in dropped))
