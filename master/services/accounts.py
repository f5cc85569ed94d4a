"""Users, login tokens, join tokens and node credentials."""

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from master.config import Settings
from master.db import models
from master.db.session import BOOTSTRAP_LOCK_KEY, advisory_xact_lock
from master.services.security import (
    dummy_hash,
    hash_password,
    new_secret,
    secret_hash,
    verify_password,
)
from protocol.errors import ErrorCode, GdosError
from protocol.messages import HostInfo
from protocol.rest import HostIn

log = logging.getLogger(__name__)


def write_secret_file(path: Path, content: str) -> None:
    """Write a file only its owner can read (0600), atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content + "\n")
    os.replace(tmp, path)


def bootstrap(s: Session, settings: Settings) -> None:
    """First start: the admin user and the default join token. Masters sharing a PostgreSQL
    database take turns here (an advisory lock until the commit), so they make one of each."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    advisory_xact_lock(s, BOOTSTRAP_LOCK_KEY)
    if s.scalars(select(models.User).where(models.User.username == "admin")).first() is None:
        password = settings.admin_password or secrets.token_urlsafe(12)
        s.add(models.User(username="admin", password_hash=hash_password(password), role="admin"))
        if not settings.admin_password:
            write_secret_file(settings.admin_password_file, password)
            print(
                f"GDOS: created user 'admin' with password {password} "
                f"(also in {settings.admin_password_file.absolute()})",
                flush=True,
            )
    token_file = settings.join_token_file
    default = s.scalars(
        select(models.JoinToken).where(models.JoinToken.is_default, ~models.JoinToken.revoked)
    ).first()
    shared = s.get_bind().dialect.name != "sqlite"
    if default is not None and not token_file.is_file() and shared:
        # Another master sharing the database made it; its file is in that master's data dir.
        log.warning(
            "the default join token was made by another master sharing this database: it is "
            "in that master's %s (or create one: POST /api/v1/join-tokens)",
            token_file.name,
        )
    elif default is None or not token_file.is_file():
        if default is not None:
            default.revoked = True
        token = new_secret("gdj")
        s.add(models.JoinToken(token_hash=secret_hash(token), is_default=True, created_by="master"))
        write_secret_file(token_file, token)
    s.commit()


def login(s: Session, username: str, password: str, ttl: float) -> tuple[str, models.User] | None:
    user = s.scalars(select(models.User).where(models.User.username == username)).first()
    # Hash even for an unknown user so the timing does not tell whether it exists.
    ok = verify_password(password, user.password_hash if user else dummy_hash())
    if user is None or not ok:
        return None
    token = new_secret("gdu")
    s.add(
        models.ApiToken(
            token_hash=secret_hash(token), user_id=user.id, expires_at=time.time() + ttl
        )
    )
    # Expired tokens are dropped here, where a write already happens.
    s.query(models.ApiToken).filter(models.ApiToken.expires_at < time.time()).delete()
    s.commit()
    return token, user


def user_for_token(s: Session, token: str) -> models.User | None:
    row = s.get(models.ApiToken, secret_hash(token))
    if row is None or row.expires_at < time.time():
        return None
    return s.get(models.User, row.user_id)


def host_columns(host: HostInfo | HostIn) -> dict[str, Any]:
    """The node columns an agent's host facts fill (at enrolment and at every hello)."""
    return {
        "hostname": host.hostname,
        "ip": host.ip,
        "os": host.os,
        "arch": host.arch,
        "mac": host.mac,
        "cpu_count": host.cpu_count,
        "mem_total": host.mem_total,
        "disk_total": host.disk_total,
    }


def node_for_secret(s: Session, secret: str) -> models.Node | None:
    node = s.scalars(
        select(models.Node).where(models.Node.secret_hash == secret_hash(secret))
    ).first()
    if node is None or node.revoked:
        return None
    return node


def create_join_token(
    s: Session, ttl: float | None, created_by: str, max_uses: int | None = None
) -> tuple[str, models.JoinToken]:
    token = new_secret("gdj")
    row = models.JoinToken(
        token_hash=secret_hash(token),
        expires_at=time.time() + ttl if ttl else None,
        created_by=created_by,
        max_uses=max_uses,
        uses=0,
    )
    s.add(row)
    s.commit()
    return token, row


def valid_join_token(s: Session, token: str) -> models.JoinToken | None:
    row = s.scalars(
        select(models.JoinToken).where(models.JoinToken.token_hash == secret_hash(token))
    ).first()
    if row is None or row.revoked:
        return None
    if row.expires_at is not None and row.expires_at < time.time():
        return None
    return row


def claim_join_token(s: Session, token: str) -> models.JoinToken:
    """Count one enrolment against a join token, or refuse: unknown, expired or revoked (401),
    or every use it allowed is taken (403). The count is one conditional UPDATE, so two nodes
    enrolling at once cannot both take a single-use token's last use."""
    row = valid_join_token(s, token)
    if row is None:
        raise GdosError(
            ErrorCode.INVALID_CREDENTIALS, "the join token is unknown, expired or revoked"
        )
    table = models.JoinToken
    claimed = s.execute(
        update(table)
        .where(table.id == row.id, (table.max_uses.is_(None)) | (table.uses < table.max_uses))
        .values(uses=table.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        s.rollback()
        raise GdosError(
            ErrorCode.FORBIDDEN,
            f"this join token is used up: it allowed {row.max_uses} node(s); "
            "ask an admin for a new one",
            {"join_token_id": row.id, "max_uses": row.max_uses},
        )
    s.refresh(row)
    return row
