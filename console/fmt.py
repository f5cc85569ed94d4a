"""Numbers and times as people read them; shared by models, charts and exports."""

from datetime import UTC, datetime
from typing import Any


def size(n: Any) -> str:
    if n is None or n == "":
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def rate(n: Any) -> str:
    return "" if n is None or n == "" else size(n) + "/s"


def percent(n: Any) -> str:
    return "" if n is None or n == "" else f"{float(n):.1f} %"


_WHEN: dict[str, str] = {}  # ISO text -> local time as shown: tables show the same few often
_WHEN_MAX = 4096


def when(text: Any) -> str:
    """An ISO 8601 UTC time in local time, to the second."""
    if not text:
        return ""
    iso = str(text)
    shown = _WHEN.get(iso)
    if shown is None:
        if len(_WHEN) >= _WHEN_MAX:
            _WHEN.clear()
        shown = _WHEN[iso] = _local_time(iso)
    return shown


def _local_time(iso: str) -> str:
    try:
        ts = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(text: Any, now: float | None = None) -> str:
    if not text:
        return ""
    try:
        ts = datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return str(text)
    secs = max(0.0, (now if now is not None else datetime.now(UTC).timestamp()) - ts)
    if secs < 60:
        return f"{secs:.0f} s ago"
    if secs < 3600:
        return f"{secs / 60:.0f} min ago"
    if secs < 86400:
        return f"{secs / 3600:.1f} h ago"
    return f"{secs / 86400:.1f} d ago"


def timestamp(value: Any) -> float:
    """Seconds since the epoch from a float or an ISO 8601 string (metric samples carry either)."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
