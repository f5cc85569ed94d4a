"""The base of services whose endpoints an older master may lack.

Such a service says through `availability(feature, ok, message)` whether this master has the
endpoints (404/405 on the route: "not available on this master"; 501: this master does not offer
it, in its words, as backups on PostgreSQL), so a view can show that in words instead of an
error box per click or per reconnect.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from PySide6.QtCore import QObject, Signal

from console.client import ClientError
from console.services.session import Session

T = TypeVar("T")
NOT_AVAILABLE = "not available on this master"


class FeatureService(QObject):
    availability = Signal(str, bool, str)  # feature, available, message

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.available: dict[str, bool] = {}

    async def guarded(self, feature: str, call: Awaitable[T]) -> T | None:
        """Run a call; a missing endpoint marks the feature unavailable instead of failing."""
        try:
            result = await call
        except ClientError as exc:
            if exc.endpoint_missing:
                self._set(feature, False, f"{feature}: {NOT_AVAILABLE} (it needs a newer master)")
                return None
            if exc.status == 501:
                self._set(feature, False, f"{feature}: {exc.message}")
                return None
            raise
        self._set(feature, True, "")
        return result

    def _set(self, feature: str, ok: bool, message: str) -> None:
        if self.available.get(feature) != ok:
            self.available[feature] = ok
            self.availability.emit(feature, ok, message)
