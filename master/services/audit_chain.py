"""The audit trail as a hash chain: each row carries the hash of its content and of the row before.

Changing, removing or reordering a row breaks the chain at that row, which `verify` reports.
Cutting rows off the end leaves a shorter valid chain; the `head` hash `verify` returns can be
recorded elsewhere (a ticket, a log shipper) to notice that too.

The hash is sha256 over canonical JSON (sorted keys, no spaces, UTF-8) of the row's fields.
"""

import hashlib
import json
from collections.abc import Iterable
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("id", "ts", "actor", "action", "target", "result", "source_ip", "detail")


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def normalize_detail(detail: dict[str, Any] | None) -> dict[str, Any]:
    """The detail exactly as it reads back from the database (JSON types only)."""
    if not detail:
        return {}
    value = json.loads(json.dumps(detail, default=str))
    return value if isinstance(value, dict) else {"value": value}


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    body = {key: fields[key] for key in HASHED_FIELDS}
    body["ts"] = float(body["ts"])
    body["id"] = int(body["id"])
    body["detail"] = body["detail"] or {}
    body["prev_hash"] = prev_hash
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def verify_rows(rows: Iterable[dict[str, Any]]) -> tuple[int, str | None, tuple[int, str] | None]:
    """Walk rows in id order: (rows checked, head hash, first break as (id, reason) or None)."""
    prev = GENESIS
    count = 0
    last_id: int | None = None
    for row in rows:
        row_id = int(row["id"])
        if row["prev_hash"] != prev:
            what = "the first row" if last_id is None else f"row {last_id}"
            return (
                count,
                None,
                (
                    row_id,
                    f"its prev_hash does not match {what}: a row before it was removed, "
                    "inserted or changed",
                ),
            )
        try:
            expected = row_hash(prev, row)
        except (TypeError, ValueError) as exc:
            return count, None, (row_id, f"its content cannot be hashed ({exc})")
        if row["hash"] != expected:
            return count, None, (row_id, "its content does not match its hash: the row was edited")
        prev = row["hash"]
        last_id = row_id
        count += 1
    return count, (prev if count else None), None
