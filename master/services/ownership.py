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


def holds(conn: Connection, node_id: str, epoch: int | None) -> bool:
    """Is the epoch still the node's (a link without one is taken at its word)?"""
    if epoch is None:
        return True
    current = conn.execute(select(NODES.c.epoch).where(NODES.c.id == node_id)).scalar()
    return current == epoch


def lost(conn: Connection, held: dict[str, int | None]) -> list[str]:
    """Of the nodes this master links to (node id -> the link's epoch), those another master
    has taken since."""
    known = {k: v for k, v in held.items() if v is not None}
    if not known:
        return []
    return [nid for nid, epoch in epochs(conn, known).items() if epoch != known[nid]]
