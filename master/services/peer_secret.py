"""The secret masters sharing one PostgreSQL database present to one another.

Made once by the migration that created `cluster_settings` (migrations run under an advisory
lock, so every master reads the same value) and read once per process. Whoever can read the
database can read it, and could do anything anyway; it never leaves the masters. On SQLite a
master is alone: there is no secret to match, and a caller presenting one is refused.
"""

import hmac

from master.db import models
from master.db.session import Database

PEER_HEADER = "x-gdos-peer"  # the calling master's id (for the logs)
SECRET_HEADER = "x-gdos-peer-secret"  # noqa: S105 - a header name
SECRET_NAME = "peer_secret"  # noqa: S105 - its row in cluster_settings


class PeerSecret:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._value: str | None = None

    def value(self) -> str | None:
        """The cluster's secret; None on SQLite or in a database migrated without it."""
        if self._value is None and self.db.is_postgres:
            with self.db.session() as s:
                row = s.get(models.ClusterSetting, SECRET_NAME)
                self._value = row.value if row is not None and row.value else None
        return self._value

    def check(self, presented: str | None) -> bool:
        """True only for the cluster's own secret (compared in constant time)."""
        expected = self.value()
        if not presented or expected is None:
            return False
        return hmac.compare_digest(presented.encode(), expected.encode())

    def headers(self, master_id: str) -> dict[str, str]:
        """What this master sends when it calls a peer."""
        return {PEER_HEADER: master_id, SECRET_HEADER: self.value() or ""}
