"""What a table's cells show: the roles views ask for, state colors, and `Column`, which names a
field, its title and how its value is shown and sorted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor

Row = dict[str, Any]  # a row as a table holds it: the API's JSON, merged with what events add

DISPLAY = int(Qt.ItemDataRole.DisplayRole)
ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
KEY_ROLE = int(Qt.ItemDataRole.UserRole) + 1  # the row's id
ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 2  # the whole row dict
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 3  # the raw value, for sorting
RAW_ROLE = SORT_ROLE
FILTER_ROLE = int(Qt.ItemDataRole.UserRole) + 4  # lower-case text of the row, for filter boxes

STATE_COLORS = {
    "running": "#1e8e3e",
    "healthy": "#1e8e3e",
    "online": "#1e8e3e",
    "succeeded": "#1e8e3e",
    "done": "#1e8e3e",
    "resolved": "#1e8e3e",
    "active": "#1e8e3e",
    "starting": "#b06000",
    "waiting_health": "#b06000",
    "stopping": "#b06000",
    "deploying": "#1a73e8",
    "destroying": "#b06000",
    "stopped": "#5f6368",
    "exited": "#5f6368",
    "pending": "#5f6368",
    "skipped": "#5f6368",
    "cancelled": "#5f6368",
    "failed": "#d93025",
    "unhealthy": "#d93025",
    "firing": "#d93025",
    "critical": "#d93025",
    "warning": "#b06000",
    "offline": "#d93025",
    "unknown": "#9aa0a6",
    "root": "#d93025",  # an instance's user: a service running as root is marked
    "drift": "#b06000",  # an instance that differs from its module until upgraded or restarted
    "preparing": "#1a73e8",  # rollout steps
    "prepared": "#1a73e8",
    "switching": "#b06000",
    "rolling_back": "#b06000",
    "rolled_back": "#b06000",
    "paused": "#1a73e8",
    "this console": "#1a73e8",  # the master a console is on (Masters)
}
STALE_COLOR = "#9aa0a6"  # rows that are not live (the master is unreachable)
COLORS = {state: QColor(color) for state, color in STATE_COLORS.items()}
BRUSHES = {state: QBrush(color) for state, color in COLORS.items()}
STALE_BRUSH = QBrush(QColor(STALE_COLOR))


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: Callable[[Any], str] = as_text
    get: Callable[[Row], Any] | None = None
    numeric: bool = False
    colored: bool = False  # state-like text gets a color
    tooltip: str = ""
    deps: tuple[str, ...] = ()  # the row fields a computed (`get`) column reads
    live: bool = False  # read from the newest live sample (`set_live`), not from the row

    @property
    def fields(self) -> tuple[str, ...]:
        return self.deps or (self.key,)

    def value(self, row: Row) -> Any:
        return self.get(row) if self.get is not None else row.get(self.key)

    def show(self, value: Any) -> str:
        try:
            return str(self.fmt(value))
        except (TypeError, ValueError):  # a field of an unexpected type: show it raw
            return as_text(value)

    def sort_key(self, value: Any) -> Any:
        if self.numeric:
            return float(value) if isinstance(value, int | float) else -1.0
        return "" if value is None else str(value).lower()
