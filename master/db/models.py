"""SQLAlchemy models: the master's durable metadata. Times are UNIX seconds (floats)."""

import secrets
import time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return secrets.token_hex(6)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[dict[str, Any]]: JSON}


# PostgreSQL's options of an index, given to the models only by `use_postgresql`: naming them in
# `Index(...)` imports SQLAlchemy's PostgreSQL dialect (2-3 MiB) into every master on SQLite.
POSTGRESQL_INDEX_OPTIONS: dict[str, dict[str, Any]] = {
    "uq_alerts_open": {"where": text("state = 'firing'")},
}


def use_postgresql() -> None:
    """Give the models' indexes their PostgreSQL options (a master on PostgreSQL, before DDL)."""
    for table in Base.metadata.tables.values():
        for index in table.indexes:
            for key, value in POSTGRESQL_INDEX_OPTIONS.get(str(index.name), {}).items():
                index.dialect_options["postgresql"][key] = value


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class JoinToken(Base):
    __tablename__ = "join_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: any number
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # nodes enrolled


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    os: Mapped[str] = mapped_column(String(32), default="")
    arch: Mapped[str] = mapped_column(String(32), default="")
    mac: Mapped[str] = mapped_column(String(32), default="")
    cpu_count: Mapped[int] = mapped_column(Integer, default=0)
    mem_total: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_total: Mapped[int] = mapped_column(BigInteger, default=0)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enrolled_at: Mapped[float] = mapped_column(Float, default=time.time)
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # The master holding the node's connection, and the ownership epoch (fencing): each hello a
    # master accepts adds one, and a master acts on the node only while the epoch is still its.
    master_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Master(Base):
    """One master process sharing this database: where it is and when it was last heard of
    (by the database's clock)."""

    __tablename__ = "masters"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="online")  # online | offline
    store: Mapped[str] = mapped_column(String(16), default="local")  # its --store-type
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    # The server process of its lease connection (PostgreSQL): the master is alive while that
    # session is, and leads while that session holds the leader lock.
    session_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Command(Base):
    """A command sent through another master: written by the master the API call reached
    (`origin`), carried out by the one holding the node (`target`), which writes the result."""

    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the message's id
    node_id: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(32), index=True)
    epoch: Mapped[int] = mapped_column(Integer)  # the node's epoch when the origin sent it
    body: Mapped[str] = mapped_column(Text)  # the message, as sent to the agent
    timeout: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # the agent's `result`
    created_at: Mapped[float] = mapped_column(Float)  # by the database's clock


class ClusterEvent(Base):
    """A broadcast event published on one master, for the others' event streams; `seq` of one
    origin is in commit order (one writer per master)."""

    __tablename__ = "cluster_events"
    __table_args__ = (Index("ix_cluster_events_origin_seq", "origin", "seq"),)
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    origin: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)  # the event's JSON
    at: Mapped[float] = mapped_column(Float)  # by the database's clock


class ClusterSetting(Base):
    """A value every master of one database shares (the secret masters present to one another)."""

    __tablename__ = "cluster_settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_package_name_version"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    os: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_at: Mapped[float] = mapped_column(Float, default=time.time)
    uploaded_by: Mapped[str] = mapped_column(String(64), default="")
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)


class PackageUpload(Base):
    """A resumable (tus) upload in progress or just finished. Its bytes are in a partial file on
    the master's disk, or, with several masters on S3, in a multipart upload whose parts, tail
    and current writer this row holds."""

    __tablename__ = "package_uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)  # last known; the file is the truth
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="receiving")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    package_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # With several masters on S3 (master/services/shared_uploads.py); unused otherwise.
    s3_upload: Mapped[str | None] = mapped_column(String(255), nullable=True)
    parts: Mapped[list[list[Any]] | None] = mapped_column(JSON, nullable=True)  # [n, size, etag]
    tail_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tail_size: Mapped[int] = mapped_column(BigInteger, default=0)
    last_part: Mapped[int] = mapped_column(Integer, default=0)  # the highest number handed out
    writer: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)


class System(Base):
    __tablename__ = "systems"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Module(Base):
    __tablename__ = "modules"
    __table_args__ = (UniqueConstraint("system_id", "name", name="uq_module_system_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    package_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_order: Mapped[int] = mapped_column(Integer, default=1)
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    args: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("system_id", "name", name="uq_instance_system_name"),
        Index("ix_instances_node", "node_id"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id"), index=True)
    module_id: Mapped[str | None] = mapped_column(ForeignKey("modules.id"), nullable=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    name: Mapped[str] = mapped_column(String(160))
    package_id: Mapped[str | None] = mapped_column(ForeignKey("packages.id"), nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    desired_state: Mapped[str] = mapped_column(String(16), default="stopped")
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    adopted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)
    health_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # How an adopted process is found, started and stopped (protocol.messages.AdoptSpec).
    adoption: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The account its process runs as on the node, as its agent reports it.
    user: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Releases: GDOS_INSTANCE_INDEX (1, 2, ... within its module, the lowest free at deploy);
    # its own settings over its module's; what it ran before; what it was last started with
    # (`applied`: {"package_id", "settings"}, a digest of the settings) and whether that now
    # differs from its module (`drift`).
    module_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    override_env: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    override_args: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    override_user: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_package_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    applied: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    drift: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Operation(Base):
    """A batch start or stop of a system, or a rollout or rollback: its steps (one per instance)
    and how it ended."""

    __tablename__ = "operations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(64), default="")
    level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ready_timeout: Mapped[float | None] = mapped_column(Float, nullable=True)
    resumed: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=time.time, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Rollouts and rollbacks: the module (null for a system's), a canary's pause, and the
    # settings and progress (protocol.rest_releases.RolloutOut) that let a restarted master resume it.
    module_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The master driving it while it runs (several masters: the leader takes it over when that
    # master dies); null on SQLite, where one master drives everything.
    master_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class LoginFailure(Base):
    """Failed logins of one source, shared by the masters on PostgreSQL (one master on SQLite
    keeps them in memory)."""

    __tablename__ = "login_failures"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failure: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(String(32))
    source_ip: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The hash chain (master/services/audit_chain.py): sha256 of this row and the previous hash.
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    hash: Mapped[str] = mapped_column(String(64), default="")


class AlertRule(Base):
    __tablename__ = "alert_rules"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(32))
    op: Mapped[str] = mapped_column(String(4))
    threshold: Mapped[Any] = mapped_column(JSON)  # a number, or a state word
    for_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    scope_kind: Mapped[str] = mapped_column(String(16), default="global")
    scope_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    hysteresis: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: the default
    resolve_for_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)


class Alert(Base):
    """One firing of a rule for one target; `resolved_at` is set when it ends."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_state_started", "state", "started_at"),
        Index("ix_alerts_rule_target", "rule_id", "target_id"),
        # One open alert per (rule, target), however many masters evaluate.
        Index(
            "uq_alerts_open",
            "rule_id",
            "target_id",
            unique=True,
            sqlite_where=text("state = 'firing'"),  # PostgreSQL's: POSTGRESQL_INDEX_OPTIONS
        ),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    rule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # kept after a delete
    rule_name: Mapped[str] = mapped_column(String(128), default="")
    metric: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(64))
    target_name: Mapped[str] = mapped_column(String(255), default="")
    node_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    system_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    resolved_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Float)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    acked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    notified: Mapped[bool] = mapped_column(Boolean, default=False)


class AlertOutboxRow(Base):
    """A webhook to send: written with the alert transition it tells of, deleted once sent (or
    given up); `claimed_by` is the master sending it until `claimed_until`."""

    __tablename__ = "alert_outbox"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    alert_id: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(16))  # firing | resolved
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the JSON sent, as written
    created_at: Mapped[float] = mapped_column(Float)
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_until: Mapped[float] = mapped_column(Float, default=0.0, server_default="0", index=True)


class Silence(Base):
    __tablename__ = "silences"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    matcher: Mapped[dict[str, Any]] = mapped_column(JSON)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float, index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
