"""Instance rows on the hot paths (agent reports, batch operations) through SQLAlchemy Core.

Batch operations and agent reports change many rows several times a second; the ORM's unit
of work would cost more than the work itself there (DESIGN: hot paths never use the ORM per
row). These helpers read rows as dicts, write changes with one executemany per shape, and
render the same `InstanceOut` the rest of the master publishes.
"""

from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Connection, Result, Table, bindparam, select, update

from master.db import models
from master.services.serializers import instance_out
from protocol.messages import InstanceReport
from protocol.rest import InstanceOut
from protocol.states import InstanceState

TABLE = cast(Table, models.Instance.__table__)
Row = dict[str, Any]
# One statement object for every call: SQLAlchemy re-keys a cached statement's result columns
# for each new but equal statement (`_adapt_to_context`); the same object skips that.
# Rows are read to be written: locked (PostgreSQL; nothing on SQLite), in id order everywhere.
_BY_IDS = (
    select(TABLE)
    .where(TABLE.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(TABLE.c.id)
    .with_for_update()
)
# A report compares and publishes: every column but those only a level or an adoption reads
# (JSON, decoded per row: most of a row's read).
_REPORTED_BY_IDS = (
    select(*(c for c in TABLE.c if c.name not in ("adoption", "applied")))
    .where(TABLE.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(TABLE.c.id)
    .with_for_update()
)
_BY_NODES = (
    select(TABLE)
    .where(TABLE.c.node_id.in_(bindparam("node_ids", expanding=True)))
    .order_by(TABLE.c.id)
    .with_for_update()
)
# The columns set come from each executemany's parameters: one object serves every shape, and
# its cache key is computed once, not for every write.
_UPDATE_BY_ID = update(TABLE).where(TABLE.c.id == bindparam("b_id"))


def load(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    return _rows(conn.execute(_BY_IDS, {"ids": list(ids)}))


def load_reported(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    """`load` without the columns a report neither changes nor publishes."""
    return _rows(conn.execute(_REPORTED_BY_IDS, {"ids": list(ids)}))


def load_nodes(conn: Connection, node_ids: Iterable[str]) -> dict[str, Row]:
    """Every instance row of these nodes (a burst of hellos)."""
    return _rows(conn.execute(_BY_NODES, {"node_ids": list(node_ids)}))


def rows(result: Result[Any]) -> list[Row]:
    """A query's rows as dicts (zipped: a third of what `dict(row._mapping)` costs a row)."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def _rows(result: Result[Any]) -> dict[str, Row]:
    return {row["id"]: row for row in rows(result)}


def report_changes(row: Mapping[str, Any], report: InstanceReport) -> Row:
    """What an agent's report changes on an instance (a destroy in progress keeps its state)."""
    changes: Row = {
        "state": row["state"] if row["state"] == InstanceState.DESTROYING else str(report.state),
        "pid": report.pid,
        "started_at": report.started_at,
        "exit_code": report.exit_code,
        "restarts": report.restarts,
        "health": str(report.health),
        "health_detail": report.health_detail,
        "last_error": report.error or row["last_error"],
        "user": report.user or row["user"],
        "version": report.version or row["version"],
    }
    return changes


def write(conn: Connection, changes: Mapping[str, Row]) -> None:
    """UPDATE each row with its changes: one executemany per set of changed columns."""
    shapes: dict[frozenset[str], list[Row]] = {}
    for instance_id, values in changes.items():
        shapes.setdefault(frozenset(values), []).append({"b_id": instance_id, **values})
    for params in shapes.values():
        conn.execute(_UPDATE_BY_ID, params)


def view(row: Mapping[str, Any]) -> InstanceOut:
    return instance_out(cast(models.Instance, SimpleNamespace(**row)))
