"""Which master holds a node, fenced by an epoch (as Temporal's shard `range_id`).

Each hello a master accepts adds one to the node's epoch and names that master; the link keeps
the epoch it got. A master writes "this node is gone" only with `WHERE epoch = :mine`, so one
that lost the node (a late disconnect, a process that was stopped and woke up) changes nothing.
"""

from collections.abc import Iterable
from typing import cast

from sqlalchemy import ColumnElement, Connection, Table, bindparam, or_, select, update

from master.db import models

NODES = cast(Table, models.Node.__table__)
CLAIM = {"epoch": NODES.c.epoch + 1}  # the values a hello's node UPDATE adds
_EPOCHS = select(NODES.c.id, NODES.c.epoch).where(NODES.c.id.in_(bindparam("ids", expanding=True)))


def epochs(conn: Connection, node_ids: Iterable[str]) -> dict[str, int]:
    """The nodes' epochs as this transaction sees them (after its own claims)."""
    return {row[0]: int(row[1]) for row in conn.execute(_EPOCHS, {"ids": list(node_ids)})}


def _held(node_id: str, epoch: int | None, master_id: str | None) -> list[ColumnElement[bool]]:
    """The node is still this master's: its epoch, or for a link that never got one (a hello
    cut short), no other master named on it."""
    which = [NODES.c.id == node_id]
    if epoch is not None:
        which.append(NODES.c.epoch == epoch)
    else:
        which.append(or_(NODES.c.master_id.is_(None), NODES.c.master_id == master_id))
    return which


def release(
    conn: Connection, node_id: str, epoch: int | None, master_id: str | None, last_seen: float
) -> bool:
    """The node's connection to this master is gone: no master holds it now. False (and
    nothing written) when another master took it meanwhile."""
    done = conn.execute(
        update(NODES)
        .where(*_held(node_id, epoch, master_id))
        .values(master_id=None, last_seen=last_seen)
    )
    return done.rowcount == 1


def orphan(conn: Connection, node_id: str, epoch: int, dead_master: str) -> bool:
    """The leader's "this node's master died": no master holds it now, and its epoch goes up so
    that the dead master, should it wake, finds its link stale. False (nothing written) when
    the node said hello elsewhere since `epoch` was read."""
    done = conn.execute(
        update(NODES)
        .where(NODES.c.id == node_id, NODES.c.epoch == epoch, NODES.c.master_id == dead_master)
        .values(master_id=None, **CLAIM)
    )
    return done.rowcount == 1


def held_by(conn: Connection, masters: Iterable[str]) -> list[tuple[str, int, str]]:
    """(node id, epoch, master id) of the nodes these masters hold."""
    which = list(masters)
    if not which:
        return []
    rows = conn.execute(
        select(NODES.c.id, NODES.c.epoch, NODES.c.master_id).where(
            NODES.c.master_id.in_(which), ~NODES.c.revoked
        )
    )
    return [(row[0], int(row[1]), str(row[2])) for row in rows]


def pin(conn: Connection, node_id: str) -> int | None:
    """The node's epoch, its row locked FOR SHARE until the transaction ends (PostgreSQL): a
    hello claiming the node waits, so it reads what this transaction writes. None when the
    node is gone."""
    epoch = conn.execute(
        select(NODES.c.epoch).where(NODES.c.id == node_id).with_for_update(read=True)
    ).scalar()
    return None if epoch is None else int(epoch)


def lost(conn: Connection, held: dict[str, int | None]) -> list[str]:
    """Of the nodes this master links to (node id -> the link's epoch), those another master
    has taken since."""
    known = {k: v for k, v in held.items() if v is not None}
    if not known:
        return []
    return [nid for nid, epoch in epochs(conn, known).items() if epoch != known[nid]]
