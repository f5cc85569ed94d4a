"""Query parameter types shared by routers."""

from datetime import UTC, datetime

from pydantic import BeforeValidator


def _iso_only(value: object) -> object:
    # pydantic would read "0.5" as a UNIX time; the contract says ISO 8601.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 time such as 2026-11-27T10:00:00Z")
    return value


# Use as Annotated[datetime | None, Query(...), ISO_ONLY]: the schema says date-time, and the
# value is refused (422) unless it is one.
ISO_ONLY = BeforeValidator(_iso_only)


def timestamp(when: datetime) -> float:
    """UNIX seconds; a time without a zone is UTC."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
