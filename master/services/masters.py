"""This master in the `masters` table: registered at start, a heartbeat by the database's clock,
marked offline at a clean stop; which other masters are online, and which are dead; links to
nodes another master has taken since (closed); the listing behind `GET /api/v1/masters`, where
the leader is the master whose lease session holds the leader lock (master/services/leader.py).

A master on SQLite is alone by definition: it registers (so the listing shows it) but sends no
heartbeat and never looks for others.
"""

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, func, literal_column, select, table, text, update

from master.config import Settings
from master.db import models
from master.db.session import Database, advisory_xact_lock, retry_conflicts
from master.services import ownership
from master.services.agents import AgentLink, AgentRegistry
from master.services.leader import LEADER_PID
from protocol.messages import CLOSE_REPLACED
from protocol.rest import iso

log = logging.getLogger(__name__)

HEARTBEAT = 2.0  # seconds between this master's heartbeats (PostgreSQL)
OFFLINE_AFTER = 10.0  # a master unheard of this long, by the database's clock, is offline
REGISTER_LOCK_KEY = 0x6764_6F73_0003  # masters register one at a time (advisory lock)
TABLE = cast(Table, models.Master.__table__)
_NOW = text("SELECT extract(epoch from clock_timestamp())")


class SeveralMastersRefused(Exception):
    """This master must not run beside the others it found; the message is one sentence."""


def master_id(path: Path) -> str:
    """This master's id, kept in its data directory so that a restart is the same master (its
    nodes' rows name it); made at the first start."""
    with contextlib.suppress(OSError):
        found = path.read_text(encoding="utf-8").strip()
        if found:
            return found[:32]
    made = models.new_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(made + "\n", encoding="utf-8")
    return made


def _now(conn: Connection) -> float:
    return float(conn.execute(_NOW).scalar() or 0.0)


def _online(now: float) -> Any:
    return (TABLE.c.status == "online") & (TABLE.c.last_seen >= now - OFFLINE_AFTER)


class Masters:
    def __init__(self, db: Database, settings: Settings, agents: AgentRegistry) -> None:
        self.db = db
        self.settings = settings
        self.agents = agents
        self.id = ""
        self.started_at = 0.0

    def register(self) -> None:
        """Write this master's row (online); `SeveralMastersRefused` when another master is
        online on the database and packages are on this master's own disk."""
        if self.id:
            return
        me = master_id(self.settings.master_id_file)
        store = self.settings.store_type
        with self.db.session() as s:
            advisory_xact_lock(s, REGISTER_LOCK_KEY)  # two masters starting see each other
            conn = s.connection()
            now = _now(conn) if self.db.is_postgres else self.db.now()
            if self.db.is_postgres:
                self._check_alone(conn, me, now)
            row = s.get(models.Master, me)
            if row is None:
                row = models.Master(id=me)
                s.add(row)
            row.url, row.status, row.store = self.settings.advertised_url, "online", store
            row.started_at = row.last_seen = now
            row.session_pid = None  # until its lease connection says which one it is
            s.commit()
        self.id, self.started_at = me, now
        self.agents.master_id = me
        log.info("registered as master %s (%s)", me, self.settings.advertised_url)

    def _check_alone(self, conn: Connection, me: str, now: float) -> None:
        """Packages on a master's own disk are seen by that master only: no master with the
        local store runs beside another."""
        others = select(TABLE.c.id, TABLE.c.url, TABLE.c.store).where(
            _online(now), TABLE.c.id != me
        )
        if self.settings.store_type != "local":
            others = others.where(TABLE.c.store == "local")
        other = conn.execute(others.limit(1)).first()
        if other is None:
            return
        if self.settings.store_type == "local":
            raise SeveralMastersRefused(
                f"another master ({other.id} at {other.url}) is online on this database, and "
                "with --store-type local each master would keep packages on its own disk: give "
                "every master --store-type minio (one S3 bucket), or stop the other master first"
            )
        raise SeveralMastersRefused(
            f"another master ({other.id} at {other.url}) is online on this database with "
            "--store-type local, which keeps packages on its own disk: restart it with "
            "--store-type minio (one S3 bucket for every master), or stop it first"
        )

    def register_again(self) -> None:
        """After a restore swapped the (SQLite) database: this master's row is written again."""
        self.id = ""
        self.register()

    async def run(self) -> None:
        """Heartbeats (PostgreSQL only): refresh this master's row and the list of peers, and
        close links to nodes another master has taken since."""
        if not self.db.is_postgres:
            return
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                lost = retry_conflicts(self.beat)
            except Exception:  # the database away: try again at the next beat
                log.warning("master heartbeat failed", exc_info=True)
                continue
            for link in lost:
                await self.let_go(link)

    def beat(self) -> list[AgentLink]:
        """One heartbeat; returns the links whose node another master has taken."""
        links = dict(self.agents.links)
        with self.db.engine.begin() as conn:
            now = _now(conn)
            conn.execute(
                update(TABLE)
                .where(TABLE.c.id == self.id)
                .values(last_seen=now, status="online", url=self.settings.advertised_url)
            )
            peers = conn.execute(select(TABLE.c.id).where(_online(now), TABLE.c.id != self.id))
            self.agents.peers = frozenset(row[0] for row in peers)
            taken = ownership.lost(conn, {nid: link.epoch for nid, link in links.items()})
        return [links[nid] for nid in taken]

    async def let_go(self, link: AgentLink) -> None:
        """The node said hello to another master since: drop this link without marking the
        node offline (it is not, and the row is no longer this master's to write)."""
        if self.agents.detach(link):
            log.warning("node %s is held by another master now: closing its old link", link.node_id)
        with contextlib.suppress(Exception):
            await link.channel.close(CLOSE_REPLACED, "the node is connected to another master")

    def retire(self) -> None:
        """A clean stop: this master is offline and holds no node."""
        if not self.id:
            return
        with contextlib.suppress(Exception), self.db.engine.begin() as conn:
            now = _now(conn) if self.db.is_postgres else self.db.now()
            conn.execute(
                update(TABLE).where(TABLE.c.id == self.id).values(status="offline", last_seen=now)
            )
            nodes = ownership.NODES
            conn.execute(update(nodes).where(nodes.c.master_id == self.id).values(master_id=None))

    def gone(self, conn: Connection) -> Any:
        """A condition on node rows: no online master holds the node (this one aside, which
        holds nothing at its start)."""
        nodes = ownership.NODES
        now = _now(conn)
        alive = select(TABLE.c.id).where(_online(now), TABLE.c.id != self.id)
        return nodes.c.master_id.is_(None) | nodes.c.master_id.not_in(alive)

    def gone_ids(self, conn: Connection) -> set[str]:
        """The other masters that are dead (PostgreSQL): unheard of for OFFLINE_AFTER, or
        whose lease session the server has ended (at once after a kill -9, after the idle
        timeout of a stopped one)."""
        now = _now(conn)
        sessions: Select[Any] = select(literal_column("pid")).select_from(table("pg_stat_activity"))
        dead = ~_online(now) | (
            TABLE.c.session_pid.is_not(None) & TABLE.c.session_pid.not_in(sessions)
        )
        return {
            row[0] for row in conn.execute(select(TABLE.c.id).where(dead, TABLE.c.id != self.id))
        }

    def leader_pid(self, conn: Connection) -> int | None:
        """The server pid of the session holding the leader lock (PostgreSQL), if any."""
        found = conn.execute(LEADER_PID).scalar()
        return int(found) if found is not None else None

    def listing(self) -> list[dict[str, Any]]:
        """`GET /api/v1/masters`, this master first."""
        with self.db.engine.connect() as conn:
            now = _now(conn) if self.db.is_postgres else self.db.now()
            rows = conn.execute(select(TABLE).order_by(TABLE.c.started_at)).all()
            leader = self.leader_pid(conn) if self.db.is_postgres else None
            nodes = ownership.NODES
            counts: dict[str, int] = {
                row[0]: int(row[1])
                for row in conn.execute(
                    select(nodes.c.master_id, func.count())
                    .where(nodes.c.master_id.is_not(None), ~nodes.c.revoked)
                    .group_by(nodes.c.master_id)
                )
            }
        out = []
        for row in rows:
            me = row.id == self.id
            held = counts.get(row.id, 0)
            online = me or (
                self.db.is_postgres
                and row.status == "online"
                and row.last_seen >= now - OFFLINE_AFTER
            )
            out.append(
                {
                    "id": row.id,
                    "url": row.url,
                    "status": "online" if online else "offline",
                    "leader": online
                    and (
                        me
                        if not self.db.is_postgres
                        else leader is not None and row.session_pid == leader
                    ),
                    "started_at": iso(row.started_at),
                    "last_seen": iso(now if me else row.last_seen),
                    "nodes": len(self.agents.links) if me else held if online else 0,
                }
            )
        out.sort(key=lambda m: m["id"] != self.id)
        return out
