"""Who a service runs as, and the folders that account may write.

The account comes from the instance's own setting, then the adopt request's or service.json's
`user`/`group`, then the agent's `--default-user` (the agent's own user unless given). The
group defaults to the user's primary group; the user's supplementary groups come along. Only a
root agent can run a service as another account; on Windows this is not supported yet.

Folders of an instance run as another account (who owns what):
- `<instance>/` (group: the service's, 0750: other accounts stay out), `releases/` and each
  release: the agent's, readable by the service, never writable by it (a compromised service
  cannot rewrite its own code or the agent's files);
- `data/`: the service's (mode 0750), its place to write (`GDOS_DATA_DIR`);
- what `shared/` holds (the manifest's shared_paths): the service's, as `data/`;
- the folders of its relative `log_paths` inside a release (and those files): the service's;
- `logs/` (stdout, stderr): the agent's; the service writes them through inherited handles.
"""

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.errors import ErrorCode, GdosError
from protocol.manifest import Manifest, is_absolute_path, normalize_relative
from protocol.messages import InstanceSpec

IS_WINDOWS = os.name == "nt"
DATA_DIR = "data"
ENV_DATA_DIR = "GDOS_DATA_DIR"


@dataclass(frozen=True)
class Account:
    user: str
    uid: int = -1
    gid: int = -1
    groups: tuple[int, ...] = ()
    home: str = ""
    switch: bool = False  # another account than the agent's own: the spawn changes to it

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def popen_options(self) -> dict[str, Any]:
        """subprocess.Popen arguments that start a process as this account."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def env(self) -> dict[str, str]:
        """What a login as this account would set (as systemd's User= does)."""
        if not self.switch:
            return {}
        return {"USER": self.user, "LOGNAME": self.user, "HOME": self.home or "/"}


def own_user() -> str:
    """The account the agent runs as (the default of --default-user)."""
    if IS_WINDOWS:
        import getpass

        return getpass.getuser()
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return str(os.geteuid())


def wanted(spec: InstanceSpec, manifest: Manifest | None) -> tuple[str | None, str | None]:
    """The (user, group) asked for: the instance's setting, then adopt's, then service.json's."""
    adopt = spec.adopt
    user = spec.user or (adopt.user if adopt else None) or (manifest.user if manifest else None)
    group = spec.group or (adopt.group if adopt else None) or (manifest.group if manifest else None)
    return user, group


def resolve(user: str | None, group: str | None, default: str | None) -> Account:
    """The account to run as; a clear GdosError when it does not exist or cannot be used."""
    own = own_user()
    name = user or default or own
    if IS_WINDOWS:
        if name != own or group is not None:
            raise GdosError(
                ErrorCode.UNSUPPORTED,
                f"running a service as another account ({name}) is not supported on Windows "
                f"yet; this agent runs services as {own}",
            )
        return Account(own)
    import grp
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise GdosError(
            ErrorCode.VALIDATION_FAILED, f"user {name!r} does not exist on this node"
        ) from None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise GdosError(
                ErrorCode.VALIDATION_FAILED, f"group {group!r} does not exist on this node"
            ) from None
    switch = pw.pw_uid != os.geteuid() or gid != os.getegid()
    if switch and os.geteuid() != 0:
        raise GdosError(
            ErrorCode.FORBIDDEN,
            f"this agent runs as {own}, not root, so it cannot run services as "
            f"{name}{':' + group if group else ''}: run the agent as root, or drop `user`/"
            f"`group` (services then run as {own})",
        )
    groups = tuple(os.getgrouplist(name, gid)) if switch else ()
    return Account(name, pw.pw_uid, gid, groups, pw.pw_dir, switch)


def _may_enter(st: os.stat_result, account: Account) -> bool:
    if account.uid == 0:
        return True
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == account.gid or st.st_gid in account.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def check_reachable(folder: Path, account: Account) -> None:
    """Every folder above the instance must let the account pass (x), or its start would fail
    with a bare 'permission denied'."""
    for parent in reversed(folder.absolute().parents):
        st = parent.stat()
        if not _may_enter(st, account):
            raise GdosError(
                ErrorCode.DEPLOY_FAILED,
                f"user {account.user} cannot reach {folder}: {parent} (mode "
                f"{stat.S_IMODE(st.st_mode):04o}) is closed to it; open it (chmod o+x) or give "
                "the agent a --work-dir the services' users can reach",
            )


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _own(path: Path, account: Account, mode: int, create: bool = False) -> None:
    """chown + chmod through a descriptor opened without following a symlink: a service that
    swaps one of its files for a link to another file cannot make the agent hand that over."""
    flags = os.O_RDONLY | _NOFOLLOW | (os.O_CREAT if create else 0)
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o640)
    try:
        os.fchown(fd, account.uid, account.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def log_files(manifest: Manifest | None) -> Iterable[str]:
    """The relative log_paths, normalised (absolute ones are the operator's to set up)."""
    for raw in (manifest.log_paths if manifest else {}).values():
        if not is_absolute_path(raw):
            yield normalize_relative(raw)


def prepare_folders(
    instance_dir: Path,
    account: Account,
    manifest: Manifest | None,
    app: Path,
    shared: Iterable[Path] = (),
) -> None:
    """Make `data/` and, for another account, hand it, the `shared` paths and the log folders
    of the release in `app` over (see above)."""
    data = instance_dir / DATA_DIR
    data.mkdir(exist_ok=True)
    if not account.switch:
        return
    check_reachable(instance_dir, account)
    # The instance's folder is open to its service's group only: other services' accounts
    # cannot read its code or logs. Inside, the agent's files are readable, never writable.
    os.chown(instance_dir, -1, account.gid, follow_symlinks=False)
    os.chmod(instance_dir, 0o750)  # noqa: S103 - the service's group may enter, no one else
    for folder in (app.parent, app):
        if folder.is_dir() and not folder.is_symlink():
            os.chmod(folder, 0o755)  # noqa: S103 - readable, never writable, by the service
    _own(data, account, 0o750)
    for path in shared:
        _own(path, account, 0o750 if path.is_dir() else 0o640)
    for rel in log_files(manifest):
        target = app / rel
        if target.parent != app:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.is_symlink():  # a shared folder is the service's already
                _own(target.parent, account, 0o750)
        _own(target, account, 0o640, create=True)
