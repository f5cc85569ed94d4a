"""Instance rows on the hot paths (agent reports, batch operations) through SQLAlchemy Core.

Batch operations and agent reports change many rows several times a second; the ORM's unit
of work would cost more than the work itself there (DESIGN: hot paths never use the ORM per
row). These helpers read rows as dicts, write changes with one executemany per shape, and
render the same `InstanceOut` the rest of the master publishes.
"""

import json
import time
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import JSON, Boolean, Connection, Result, Table, bindparam, select, update

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
# Columns SQLite takes as they are (no bind processing; JSON is encoded by SQLAlchemy): a
# change of only these goes straight to the driver's executemany on SQLite, past SQLAlchemy's
# parameters per row (about half of a 1,000-row write's CPU: a fleet-wide level, a burst of
# reports). `updated_at` is then set here, as the column's `onupdate` would.
_PLAIN = frozenset(c.name for c in TABLE.c if not isinstance(c.type, JSON)) - {"id", "updated_at"}
_RAW_UPDATES: dict[frozenset[str], tuple[str, tuple[str, ...]]] = {}


class _RawRead:
    """The same read as a statement above, straight to SQLite's driver: one statement text
    whatever the number of ids (they go as one JSON array, `json_each`), so no expanding IN
    rendered per call, and the rows decoded here (booleans, JSON) instead of by SQLAlchemy's
    result processing: about a quarter of a 1,000-row read's CPU, a fleet-wide level's and a burst
    of reports'. Only the table's own column names go into the text, no input."""

    def __init__(self, statement: Any) -> None:
        self.keys = tuple(c.name for c in statement.selected_columns)
        names = ", ".join(f'"{name}"' for name in self.keys)
        self.sql = (
            f"SELECT {names} FROM {TABLE.name} "  # noqa: S608
            "WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
        )
        types = {c.name: c.type for c in TABLE.c}
        self.flags = tuple(k for k in self.keys if isinstance(types[k], Boolean))
        self.json = tuple(k for k in self.keys if isinstance(types[k], JSON))

    def __call__(self, conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
        result = conn.exec_driver_sql(self.sql, (json.dumps(list(ids)),))
        keys, flags, loaded = self.keys, self.flags, self.json
        out: dict[str, Row] = {}
        for values in result.cursor.fetchall():
            row = dict(zip(keys, values, strict=True))
            for key in flags:
                if row[key] is not None:
                    row[key] = bool(row[key])
            for key in loaded:
                if row[key] is not None:
                    row[key] = json.loads(row[key])
            out[row["id"]] = row
        return out


_RAW_BY_IDS = _RawRead(_BY_IDS)
_RAW_REPORTED_BY_IDS = _RawRead(_REPORTED_BY_IDS)


def load(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    if conn.dialect.name == "sqlite":
        return _RAW_BY_IDS(conn, ids)
    return _rows(conn.execute(_BY_IDS, {"ids": list(ids)}))


def load_reported(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    """`load` without the columns a report neither changes nor publishes."""
    if conn.dialect.name == "sqlite":
        return _RAW_REPORTED_BY_IDS(conn, ids)
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
    raw = conn.dialect.name == "sqlite"
    shapes: dict[frozenset[str], list[tuple[str, Row]]] = {}
    for instance_id, values in changes.items():
        shapes.setdefault(frozenset(values), []).append((instance_id, values))
    now = time.time()
    for columns, rows in shapes.items():
        if raw and columns <= _PLAIN:
            sql, order = _raw_update(columns)
            conn.exec_driver_sql(sql, [(*(v[c] for c in order), now, i) for i, v in rows])
        else:
            conn.execute(_UPDATE_BY_ID, [{"b_id": i, **v} for i, v in rows])


def _raw_update(columns: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """SQLite's UPDATE of these columns (and `updated_at`) by id, and the columns' order."""
    known = _RAW_UPDATES.get(columns)
    if known is None:
        order = tuple(sorted(columns))  # the table's own column names (`_PLAIN`), no input
        sets = ", ".join(f'"{name}" = ?' for name in (*order, "updated_at"))
        sql = f"UPDATE {TABLE.name} SET {sets} WHERE id = ?"  # noqa: S608
        known = _RAW_UPDATES[columns] = (sql, order)
    return known


def view(row: Mapping[str, Any]) -> InstanceOut:
    return instance_out(cast(models.Instance, SimpleNamespace(**row)))
