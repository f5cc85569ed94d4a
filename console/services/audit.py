"""The audit trail: the rows the filters select, followed live, exported as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.message import action, async_slot, info
from console.models.tables import AuditTableModel
from console.services.feature import FeatureService
from console.services.session import Session


def _audit_key(row: dict[str, Any], n: int) -> str:
    return str(row["id"]) if row.get("id") is not None else f"#{n}"


class AuditService(FeatureService):
    """The audit rows the filters select; new ones arrive as `audit` events and are added."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = AuditTableModel(self)
        self.filters: dict[str, Any] = {}
        self.loaded = False
        session.on("audit", self.on_audit)

    @async_slot(dict)
    @action("loading the audit trail")
    async def load(self, filters: dict[str, Any]) -> None:
        self.filters = {k: v for k, v in filters.items() if v}
        rows = await self.guarded("audit", self.session.require().audit(**self.filters))
        if rows is not None:
            self.loaded = True
            self.model.set_rows(
                {**r.model_dump(), "_key": _audit_key(r.model_dump(), n)}
                for n, r in enumerate(rows)
            )

    def on_audit(self, data: dict[str, Any]) -> None:
        if not self.loaded or data.get("id") is None:
            return
        f = self.filters
        if (f.get("actor") and data.get("actor") != f["actor"]) or (
            f.get("action") and data.get("action") != f["action"]
        ):
            return
        self.model.update({**data, "_key": _audit_key(data, 0)})

    @async_slot(str)
    @action("exporting the audit trail")
    async def export_csv(self, path: str) -> None:
        filters = {k: v for k, v in self.filters.items() if k != "limit"}
        text = await self.session.require().audit_csv(**filters)
        Path(path).write_text(text, encoding="utf-8")
        info(f"audit trail saved to {path}")
